//! Verification of inbound mail with mail-auth: SPF (RFC 7208) of the MAIL
//! FROM domain (of the HELO name for the null sender), DKIM (RFC 6376),
//! ARC (RFC 8617) and DMARC (RFC 7489) of the From domain. The results
//! become an `Authentication-Results` header (RFC 8601), a summary for the
//! stanza, and facts for the policy's verdict.

use std::net::IpAddr;

use facteur_policy::auth::{self, auth_verdict, AuthFacts, AuthRules, AuthVerdict};
use hickory_resolver::TokioResolver;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfResult,
};

/// What verification found about one mail.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The policy's decision.
    pub verdict: AuthVerdict,
    /// `Authentication-Results: …` with its CRLF, to prepend to the mail.
    pub header: String,
    /// `spf=pass dkim=none dmarc=fail arc=none`, for the stanza.
    pub summary: String,
}

/// Verifies inbound mail against the sender's DNS records.
pub struct Verifier {
    authenticator: MessageAuthenticator,
    hostname: String,
}

impl Verifier {
    pub fn new(resolver: TokioResolver, hostname: &str) -> Verifier {
        Verifier {
            authenticator: MessageAuthenticator(resolver),
            hostname: hostname.to_owned(),
        }
    }

    /// Runs every check on `raw` (the mail as received, without facteur's
    /// own headers); `rules` say what a failure leads to.
    pub async fn verify(
        &self,
        raw: &[u8],
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        rules: &AuthRules,
    ) -> Verified {
        // RFC 7208 §2.3 and §2.4: the HELO identity, then MAIL FROM (the
        // HELO identity again for the null sender).
        let helo_spf = self
            .authenticator
            .verify_spf(SpfParameters::verify_ehlo(ip, helo, &self.hostname))
            .await;
        let spf = match mail_from {
            "" => helo_spf.clone(),
            sender => {
                self.authenticator
                    .verify_spf(SpfParameters::verify_mail_from(
                        ip,
                        helo,
                        &self.hostname,
                        sender,
                    ))
                    .await
            }
        };
        let mail_from_domain = match mail_from.rsplit_once('@') {
            Some((_, domain)) => domain,
            None => helo,
        };
        let results = AuthenticationResults::new(&self.hostname)
            .with_spf_ehlo_result(&helo_spf, ip, helo)
            .with_spf_mailfrom_result(&spf, ip, mail_from, helo);
        // A host the HELO name's domain disowns fails whatever its
        // envelope says.
        let spf_result = match helo_spf.result() {
            SpfResult::Fail => SpfResult::Fail,
            _ => spf.result(),
        };
        let spf_fact = match spf_result {
            SpfResult::Pass => auth::Spf::Pass,
            SpfResult::Fail => auth::Spf::Fail,
            SpfResult::SoftFail => auth::Spf::SoftFail,
            SpfResult::Neutral => auth::Spf::Neutral,
            SpfResult::TempError => auth::Spf::TempError,
            SpfResult::PermError => auth::Spf::PermError,
            SpfResult::None => auth::Spf::None,
        };
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            // No headers to check: SPF alone.
            let facts = AuthFacts {
                spf: spf_fact,
                dkim: auth::Dkim::None,
                dmarc: auth::Dmarc::None,
                dmarc_policy: None,
                from_domain: String::new(),
                arc: auth::Arc::None,
                arc_sealer: None,
            };
            return Verified {
                verdict: auth_verdict(&facts, rules),
                header: format!("Authentication-Results: {results}\r\n"),
                summary: summary(&facts),
            };
        };
        let dkim = self.authenticator.verify_dkim(&message).await;
        let arc = self.authenticator.verify_arc(&message).await;
        let dmarc = self
            .authenticator
            .verify_dmarc(DmarcParameters::new(
                &message,
                &dkim,
                mail_from_domain,
                &spf,
            ))
            .await;
        let header_from = message.from.first().map(String::as_str).unwrap_or_default();
        let results = results
            .with_dkim_results(&dkim, header_from)
            .with_arc_result(&arc, ip)
            .with_dmarc_result(&dmarc);

        let dkim_fact = dkim_aggregate(dkim.iter().map(|output| output.result()));
        let dmarc_fact = match dmarc.result() {
            DmarcResult::Pass => auth::Dmarc::Pass,
            DmarcResult::Fail(_) => auth::Dmarc::Fail,
            DmarcResult::TempError(_) => auth::Dmarc::TempError,
            DmarcResult::PermError(_) => auth::Dmarc::PermError,
            DmarcResult::None => auth::Dmarc::None,
        };
        let dmarc_policy = match (dmarc.dmarc_record(), dmarc.policy()) {
            (None, _) => None,
            (Some(_), Policy::Reject) => Some(auth::DmarcPolicy::Reject),
            (Some(_), Policy::Quarantine) => Some(auth::DmarcPolicy::Quarantine),
            (Some(_), Policy::None | Policy::Unspecified) => Some(auth::DmarcPolicy::None),
        };
        let (arc_fact, arc_sealer) = match arc.result() {
            DkimResult::Pass => (
                auth::Arc::Pass,
                arc.sets()
                    .last()
                    .map(|set| set.seal.header.d.to_ascii_lowercase()),
            ),
            DkimResult::None => (auth::Arc::None, None),
            _ => (auth::Arc::Fail, None),
        };
        let facts = AuthFacts {
            spf: spf_fact,
            dkim: dkim_fact,
            dmarc: dmarc_fact,
            dmarc_policy,
            from_domain: dmarc.domain().to_owned(),
            arc: arc_fact,
            arc_sealer,
        };
        Verified {
            verdict: auth_verdict(&facts, rules),
            header: format!("Authentication-Results: {results}\r\n"),
            summary: summary(&facts),
        }
    }
}

/// The best result of all signatures: one that verifies is enough.
fn dkim_aggregate<'a>(results: impl Iterator<Item = &'a DkimResult>) -> auth::Dkim {
    let mut best = auth::Dkim::None;
    for result in results {
        let this = match result {
            DkimResult::Pass => return auth::Dkim::Pass,
            DkimResult::TempError(_) => auth::Dkim::TempError,
            DkimResult::Fail(_) | DkimResult::Neutral(_) => auth::Dkim::Fail,
            DkimResult::PermError(_) => auth::Dkim::PermError,
            DkimResult::None => auth::Dkim::None,
        };
        // A transient error may still pass later; a failure says more than
        // a broken signature.
        best = match (best, this) {
            (auth::Dkim::TempError, _) | (_, auth::Dkim::TempError) => auth::Dkim::TempError,
            (auth::Dkim::Fail, _) | (_, auth::Dkim::Fail) => auth::Dkim::Fail,
            (auth::Dkim::PermError, _) | (_, auth::Dkim::PermError) => auth::Dkim::PermError,
            _ => auth::Dkim::None,
        };
    }
    best
}

/// `spf=… dkim=… dmarc=… arc=…`: what the stanza's `<auth/>` carries.
fn summary(facts: &AuthFacts) -> String {
    let spf = match facts.spf {
        auth::Spf::Pass => "pass",
        auth::Spf::Fail => "fail",
        auth::Spf::SoftFail => "softfail",
        auth::Spf::Neutral => "neutral",
        auth::Spf::None => "none",
        auth::Spf::TempError => "temperror",
        auth::Spf::PermError => "permerror",
    };
    let dkim = match facts.dkim {
        auth::Dkim::Pass => "pass",
        auth::Dkim::Fail => "fail",
        auth::Dkim::None => "none",
        auth::Dkim::TempError => "temperror",
        auth::Dkim::PermError => "permerror",
    };
    let dmarc = match facts.dmarc {
        auth::Dmarc::Pass => "pass",
        auth::Dmarc::Fail => "fail",
        auth::Dmarc::None => "none",
        auth::Dmarc::TempError => "temperror",
        auth::Dmarc::PermError => "permerror",
    };
    let arc = match facts.arc {
        auth::Arc::Pass => "pass",
        auth::Arc::Fail => "fail",
        auth::Arc::None => "none",
    };
    format!("spf={spf} dkim={dkim} dmarc={dmarc} arc={arc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_good_signature_is_enough() {
        let fail = DkimResult::Fail(mail_auth::Error::NotAligned);
        assert_eq!(
            dkim_aggregate([&fail, &DkimResult::Pass].into_iter()),
            auth::Dkim::Pass
        );
        assert_eq!(dkim_aggregate([&fail].into_iter()), auth::Dkim::Fail);
        assert_eq!(dkim_aggregate(std::iter::empty()), auth::Dkim::None);
    }
}

//! The Bayesian content classifier: tokens in, the probability that a mail
//! is spam out. Robinson's smoothed token probabilities f(w), combined with
//! Fisher's chi-square method, as bogofilter and SpamBayes do; tokens close
//! to neutral are left out, and at most [`MAX_TOKENS`] of the most telling
//! ones count.
//!
//! Tokens are 64-bit hashes of words, each prefixed by where it was found
//! (`subject:cheap`, `url:example.com`, a bare word for body text). The
//! model keeps, for each hash, in how many spam and ham mails it was seen,
//! and how many spam and ham mails were learnt. It saves to a compact
//! binary form: [`Model::to_bytes`] and [`Model::from_bytes`].
//!
//! A user's model adds its counts to the global model's once it has
//! learnt from [`USER_MODEL_MIN_FEEDBACK`] feedbacks ([`user_model_counts`]).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Robinson's strength of the prior: how many mails' worth of evidence the
/// assumed probability of an unknown token weighs (bogofilter's `robs`).
pub const ROBINSON_S: f64 = 0.0178;
/// Robinson's assumed probability of a token never seen (bogofilter's `robx`).
pub const ROBINSON_X: f64 = 0.52;
/// Tokens whose probability is within this distance of 0.5 do not count
/// (bogofilter's `min_dev`).
pub const MIN_DEVIATION: f64 = 0.375;
/// At most this many tokens, the farthest from 0.5, are combined.
pub const MAX_TOKENS: usize = 400;
/// At or above this score a mail is spam by default. Scores between 0.5
/// and here are mixed evidence; on the SpamAssassin corpus no ham scored
/// above 0.5 (tests/bench/spam).
pub const DEFAULT_THRESHOLD: f64 = 0.9;
/// A user's own model counts from this many feedbacks on.
pub const USER_MODEL_MIN_FEEDBACK: u64 = 20;

/// Whether a user's own model is added to the global one: from its
/// [`USER_MODEL_MIN_FEEDBACK`]th feedback (spam and ham reports together).
pub fn user_model_counts(feedbacks: u64) -> bool {
    feedbacks >= USER_MODEL_MIN_FEEDBACK
}

/// The words of a token are at most this long; longer runs are skipped
/// (base64 left over, hashes), shorter than [`MIN_WORD`] too.
const MAX_WORD: usize = 40;
const MIN_WORD: usize = 3;

/// FNV-1a over the prefix and the lowercased word, then a final mix so
/// the low bits are usable directly as a hash table index.
fn hash(prefix: &str, word: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prefix
        .bytes()
        .chain([0u8])
        .chain(word.iter().map(u8::to_ascii_lowercase))
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Whether a byte belongs to a word: letters and digits (any non-ASCII
/// byte, so UTF-8 words hold together), and the few signs spam leans on.
fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || matches!(b, b'$' | b'\'' | b'-' | b'!' | b'_')
}

/// The tokens of one mail, hashed; [`Tokens::finish`] sorts them and
/// drops repeats (a mail counts once per token).
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    hashes: Vec<u64>,
}

impl Tokens {
    /// No tokens yet.
    pub fn new() -> Tokens {
        Tokens::default()
    }

    /// One token as it is (`prefix:word`), if it is not empty.
    pub fn token(&mut self, prefix: &str, word: &str) {
        let word = word.trim();
        if !word.is_empty() && word.len() <= 255 {
            self.hashes.push(hash(prefix, word.as_bytes()));
        }
    }

    /// The words of `text`, each prefixed by `prefix` (`""` for body text).
    /// URLs in it yield their host's tokens ([`Tokens::host`]) too.
    pub fn text(&mut self, prefix: &str, text: &str) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let Some(&b) = bytes.get(i) else { break };
            if !word_byte(b) {
                i += 1;
                continue;
            }
            let start = i;
            // A dot inside a word joins it (hosts, addresses, versions).
            while bytes.get(i).is_some_and(|&b| {
                word_byte(b)
                    || (b == b'.' && bytes.get(i + 1).is_some_and(|&n| n.is_ascii_alphanumeric()))
            }) {
                i += 1;
            }
            let word = bytes.get(start..i).unwrap_or_default();
            if (word == b"http" || word == b"https")
                && bytes.get(i..i + 3) == Some(b"://".as_slice())
            {
                i += 3;
                let host_start = i;
                while bytes
                    .get(i)
                    .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                {
                    i += 1;
                }
                if let Some(host) = text.get(host_start..i) {
                    self.host("url", host);
                }
                continue;
            }
            self.word(prefix, word);
        }
    }

    /// A word, trimmed of the signs that only end it, if its length fits.
    fn word(&mut self, prefix: &str, word: &[u8]) {
        let mut word = word;
        while let [rest @ .., b'\'' | b'-' | b'_'] = word {
            word = rest;
        }
        while let [b'\'' | b'-' | b'_', rest @ ..] = word {
            word = rest;
        }
        if (MIN_WORD..=MAX_WORD).contains(&word.len()) && !word.iter().all(u8::is_ascii_digit) {
            self.hashes.push(hash(prefix, word));
        }
    }

    /// A host name, and its registered-looking parent (the last two
    /// labels), each as `prefix:host`.
    pub fn host(&mut self, prefix: &str, host: &str) {
        let host = host.trim_matches('.');
        if host.is_empty() || host.len() > 253 {
            return;
        }
        self.hashes.push(hash(prefix, host.as_bytes()));
        let mut dots = host.rmatch_indices('.');
        if let (Some(_), Some((second, _))) = (dots.next(), dots.next()) {
            if let Some(parent) = host.get(second + 1..) {
                self.hashes.push(hash(prefix, parent.as_bytes()));
            }
        }
    }

    /// The visible words of an HTML text, and the hosts of the links in
    /// its tags (`href`, `src`, ...): tags and entities separate words.
    pub fn html(&mut self, html: &str) {
        let mut rest = html;
        while !rest.is_empty() {
            match rest.find('<') {
                Some(open) => {
                    let (text, tag) = rest.split_at(open);
                    self.visible(text);
                    let end = tag.find('>').map_or(tag.len(), |e| e + 1);
                    let (tag, after) = tag.split_at(end);
                    self.links(tag);
                    rest = after;
                }
                None => {
                    self.visible(rest);
                    rest = "";
                }
            }
        }
    }

    /// Text between tags, with `&entities;` dropped.
    fn visible(&mut self, text: &str) {
        let mut rest = text;
        while let Some(amp) = rest.find('&') {
            let (before, entity) = rest.split_at(amp);
            self.text("", before);
            let end = entity
                .bytes()
                .take(10)
                .position(|b| b == b';')
                .map_or(1, |e| e + 1);
            rest = entity.get(end..).unwrap_or_default();
        }
        self.text("", rest);
    }

    /// The hosts of the URLs inside one tag.
    fn links(&mut self, tag: &str) {
        let mut rest = tag;
        while let Some(at) = rest.find("://") {
            let after = rest.get(at + 3..).unwrap_or_default();
            let scheme = rest.get(..at).unwrap_or_default();
            if scheme.ends_with("http") || scheme.ends_with("https") {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
                    .unwrap_or(after.len());
                self.host("url", after.get(..end).unwrap_or_default());
            }
            rest = after;
        }
    }

    /// The distinct hashes, sorted.
    pub fn finish(mut self) -> Vec<u64> {
        self.hashes.sort_unstable();
        self.hashes.dedup();
        self.hashes
    }
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Counts = HashMap<u64, (u32, u32), BuildHasherDefault<KeyHasher>>;

/// What was learnt: for each token, the spam and ham mails it was in.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Model {
    tokens: Counts,
    spam: u64,
    ham: u64,
}

/// The first bytes of a saved model.
const MAGIC: &[u8; 8] = b"FCTBAYS1";

/// Why saved bytes are not a model.
#[derive(Debug, PartialEq)]
pub enum ModelError {
    /// Not a model's bytes.
    Magic,
    /// Cut short, or with bytes after the end.
    Length,
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelError::Magic => "not a facteur spam model (bad magic)",
            ModelError::Length => "the spam model is truncated or has trailing bytes",
        })
    }
}

impl std::error::Error for ModelError {}

impl Model {
    /// An empty model.
    pub fn new() -> Model {
        Model::default()
    }

    /// Spam mails learnt.
    pub fn spam_mails(&self) -> u64 {
        self.spam
    }

    /// Ham mails learnt.
    pub fn ham_mails(&self) -> u64 {
        self.ham
    }

    /// Distinct tokens known.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether nothing was learnt.
    pub fn is_empty(&self) -> bool {
        self.spam == 0 && self.ham == 0
    }

    /// Learns one mail's distinct tokens ([`Tokens::finish`]) as spam or ham.
    pub fn learn(&mut self, tokens: &[u64], spam: bool) {
        for &t in tokens {
            let c = self.tokens.entry(t).or_default();
            if spam {
                c.0 = c.0.saturating_add(1);
            } else {
                c.1 = c.1.saturating_add(1);
            }
        }
        if spam {
            self.spam += 1;
        } else {
            self.ham += 1;
        }
    }

    /// Forgets one mail learnt as spam or ham (a user who changed her
    /// mind about it); counts never go below zero.
    pub fn unlearn(&mut self, tokens: &[u64], spam: bool) {
        for &t in tokens {
            if let Some(c) = self.tokens.get_mut(&t) {
                if spam {
                    c.0 = c.0.saturating_sub(1);
                } else {
                    c.1 = c.1.saturating_sub(1);
                }
                if *c == (0, 0) {
                    self.tokens.remove(&t);
                }
            }
        }
        if spam {
            self.spam = self.spam.saturating_sub(1);
        } else {
            self.ham = self.ham.saturating_sub(1);
        }
    }

    /// The probability that a mail with these distinct tokens is spam, in
    /// [0, 1]; 0.5 when nothing telling is known (or no spam or no ham was
    /// ever learnt). `user` adds a user's own counts to this model's.
    pub fn score(&self, tokens: &[u64], user: Option<&Model>) -> f64 {
        let spam_mails = self.spam + user.map_or(0, |u| u.spam);
        let ham_mails = self.ham + user.map_or(0, |u| u.ham);
        if spam_mails == 0 || ham_mails == 0 {
            return 0.5;
        }
        let (ns, nh) = (spam_mails as f64, ham_mails as f64);
        let mut telling: Vec<f64> = Vec::with_capacity(tokens.len().min(4 * MAX_TOKENS));
        for t in tokens {
            let (mut s, mut h) = self.tokens.get(t).copied().unwrap_or_default();
            if let Some((us, uh)) = user.and_then(|u| u.tokens.get(t)) {
                s = s.saturating_add(*us);
                h = h.saturating_add(*uh);
            }
            if s == 0 && h == 0 {
                continue;
            }
            let f = robinson(f64::from(s), f64::from(h), ns, nh);
            if (f - 0.5).abs() >= MIN_DEVIATION {
                telling.push(f);
            }
        }
        if telling.is_empty() {
            return 0.5;
        }
        if telling.len() > MAX_TOKENS {
            telling.select_nth_unstable_by(MAX_TOKENS, |a, b| {
                (b - 0.5).abs().total_cmp(&(a - 0.5).abs())
            });
            telling.truncate(MAX_TOKENS);
        }
        fisher(&telling)
    }

    /// The compact saved form: magic, spam and ham mails, token count,
    /// then per token (sorted) its hash, spam and ham counts; little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut entries: Vec<(u64, (u32, u32))> =
            self.tokens.iter().map(|(k, v)| (*k, *v)).collect();
        entries.sort_unstable_by_key(|e| e.0);
        let mut out = Vec::with_capacity(32 + 16 * entries.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.spam.to_le_bytes());
        out.extend_from_slice(&self.ham.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (k, (s, h)) in entries {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&h.to_le_bytes());
        }
        out
    }

    /// Reads what [`Model::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let (magic, rest) = bytes.split_at_checked(8).ok_or(ModelError::Magic)?;
        if magic != MAGIC {
            return Err(ModelError::Magic);
        }
        let (head, body) = rest.split_at_checked(24).ok_or(ModelError::Length)?;
        let word = |i: usize| {
            head.get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or(ModelError::Length)
        };
        let (spam, ham, n) = (word(0)?, word(1)?, word(2)?);
        let n = usize::try_from(n).map_err(|_| ModelError::Length)?;
        if body.len() / 16 != n || body.len() % 16 != 0 {
            return Err(ModelError::Length);
        }
        let mut tokens = Counts::with_capacity_and_hasher(n, Default::default());
        for e in body.chunks_exact(16) {
            let (k, c) = e.split_at(8);
            let (s, h) = c.split_at(4);
            let k = u64::from_le_bytes(k.try_into().map_err(|_| ModelError::Length)?);
            let s = u32::from_le_bytes(s.try_into().map_err(|_| ModelError::Length)?);
            let h = u32::from_le_bytes(h.try_into().map_err(|_| ModelError::Length)?);
            tokens.insert(k, (s, h));
        }
        Ok(Model { tokens, spam, ham })
    }
}

/// Robinson's f(w): the token's spam probability from its counts,
/// pulled towards [`ROBINSON_X`] when there is little evidence.
fn robinson(s: f64, h: f64, ns: f64, nh: f64) -> f64 {
    let (sr, hr) = (s / ns, h / nh);
    let p = sr / (sr + hr);
    let n = s + h;
    let f = (ROBINSON_S * ROBINSON_X + n * p) / (ROBINSON_S + n);
    f.clamp(1e-6, 1.0 - 1e-6)
}

/// Fisher's combining: how far the product of the probabilities, and of
/// their complements, is from what chance gives, by the chi-square law.
fn fisher(fs: &[f64]) -> f64 {
    let n = fs.len();
    let (mut ln_p, mut ln_q) = (0.0, 0.0);
    for f in fs {
        ln_p += f.ln();
        ln_q += (1.0 - f).ln();
    }
    let spamminess = 1.0 - chi2_q(-2.0 * ln_q, 2 * n);
    let hamminess = 1.0 - chi2_q(-2.0 * ln_p, 2 * n);
    ((1.0 + spamminess - hamminess) / 2.0).clamp(0.0, 1.0)
}

/// The chance that a chi-square variable with `v` (even) degrees of freedom
/// is at least `x2`, summed in log space so large values do not underflow.
fn chi2_q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    if m <= 0.0 {
        return 1.0;
    }
    let ln_m = m.ln();
    let mut ln_term = -m;
    let mut sum = ln_term.exp();
    for i in 1..v / 2 {
        ln_term += ln_m - (i as f64).ln();
        sum += ln_term.exp();
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(subject: &str, body: &str) -> Vec<u64> {
        let mut t = Tokens::new();
        t.text("subject", subject);
        t.text("", body);
        t.finish()
    }

    const SPAM: [(&str, &str); 6] = [
        (
            "Cheap meds online",
            "Buy viagra now! Limited offer, click http://pills.example.ru/buy",
        ),
        (
            "You won a prize",
            "Claim your lottery winnings now, click http://win.example.ru",
        ),
        (
            "Cheap watches",
            "Replica watches at the lowest price, order now http://shop.example.ru",
        ),
        (
            "Make money fast",
            "Earn $5000 a week from home, click here now http://cash.example.ru",
        ),
        (
            "Limited offer",
            "Lowest price pills, buy now and save http://pills.example.ru",
        ),
        (
            "Winner notification",
            "Your lottery prize is waiting, claim now http://prize.example.ru",
        ),
    ];
    const HAM: [(&str, &str); 6] = [
        (
            "Meeting tomorrow",
            "Can we move the project meeting to ten? The agenda is attached.",
        ),
        (
            "Re: patch review",
            "The patch looks good, but the test for the parser fails on windows.",
        ),
        (
            "Lunch",
            "Are you free for lunch on Thursday? The new place near the office.",
        ),
        (
            "Release notes",
            "Here are the release notes for version two, please review the changes.",
        ),
        (
            "Re: project plan",
            "I updated the project plan and the schedule for the next release.",
        ),
        (
            "Conference",
            "The conference talk was accepted; slides are due next week.",
        ),
    ];

    fn trained() -> Model {
        let mut m = Model::new();
        for (s, b) in SPAM {
            m.learn(&tokens(s, b), true);
        }
        for (s, b) in HAM {
            m.learn(&tokens(s, b), false);
        }
        m
    }

    #[test]
    fn scores_unseen_spam_high_and_ham_low() {
        let m = trained();
        let spam = m.score(
            &tokens(
                "Lowest price offer",
                "Click now to claim your prize http://pills.example.ru/x",
            ),
            None,
        );
        let ham = m.score(
            &tokens(
                "Re: release schedule",
                "Please review the agenda for the project meeting.",
            ),
            None,
        );
        assert!(spam > 0.9, "spam scored {spam}");
        assert!(ham < 0.1, "ham scored {ham}");
    }

    #[test]
    fn nothing_known_is_neutral() {
        let m = trained();
        assert_eq!(
            m.score(&tokens("zzqx", "unheard vocabulary entirely"), None),
            0.5
        );
        assert_eq!(Model::new().score(&tokens("a", "b"), None), 0.5);
    }

    #[test]
    fn a_users_counts_add_to_the_global_ones() {
        let global = trained();
        let mail = tokens(
            "Quarterly newsletter",
            "quarterly bulletin of our association",
        );
        assert_eq!(global.score(&mail, None), 0.5);
        let mut user = Model::new();
        for _ in 0..3 {
            user.learn(&mail, true);
        }
        assert!(global.score(&mail, Some(&user)) > 0.9);
    }

    #[test]
    fn a_users_model_counts_from_its_twentieth_feedback() {
        assert!(!user_model_counts(0));
        assert!(!user_model_counts(19));
        assert!(user_model_counts(20));
        assert!(user_model_counts(500));
    }

    #[test]
    fn saved_models_load_back_and_bad_bytes_are_refused() {
        let m = trained();
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), 32 + 16 * m.len());
        assert_eq!(Model::from_bytes(&bytes), Ok(m));
        assert_eq!(Model::from_bytes(b"nonsense"), Err(ModelError::Magic));
        assert_eq!(
            Model::from_bytes(bytes.get(..bytes.len() - 3).unwrap_or_default()),
            Err(ModelError::Length)
        );
        assert_eq!(Model::from_bytes(&[]), Err(ModelError::Magic));
    }

    #[test]
    fn html_gives_visible_words_and_link_hosts() {
        let mut t = Tokens::new();
        t.html("<p>Cheap&nbsp;pills <a href=\"https://www.pills.example.ru/a\">here</a></p>");
        let got = t.finish();
        let mut want = Tokens::new();
        want.text("", "Cheap pills here");
        want.host("url", "www.pills.example.ru");
        assert_eq!(got, want.finish());
        let mut parent = Tokens::new();
        parent.token("url", "example.ru");
        assert!(parent.finish().iter().all(|h| got.contains(h)));
    }

    #[test]
    fn words_are_case_folded_and_trimmed() {
        let mut a = Tokens::new();
        a.text("", "FREE -offer- 12345 ab");
        let mut b = Tokens::new();
        b.text("", "free offer");
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn a_dot_inside_a_word_joins_it() {
        let mut a = Tokens::new();
        a.text("", "Ask Example.com.");
        let mut b = Tokens::new();
        b.token("", "ask");
        b.token("", "example.com");
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn chi_square_tail_is_sane() {
        assert!((chi2_q(0.0, 4) - 1.0).abs() < 1e-12);
        // Q(x2 = 2, v = 2) = e^-1.
        assert!((chi2_q(2.0, 2) - (-1.0f64).exp()).abs() < 1e-12);
        assert!(chi2_q(5000.0, 300) < 1e-100);
    }
}

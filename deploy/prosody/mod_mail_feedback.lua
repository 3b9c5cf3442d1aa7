-- mod_mail_feedback: tells facteur, the XMPP-Mail gateway, of its users'
-- blocks and spam reports.
--
-- A user blocks a mail sender in her client (XEP-0191), often with a
-- XEP-0377 report; the block goes to her own server, never to the gateway.
-- For every block and unblock whose items are JIDs of the gateway, this
-- module sends the gateway one message per item, from the server's own
-- domain (which only the server can send as):
--
--   <message from='example.test' to='mail.example.test' id='…'>
--     <report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>
--       <text>…</text>
--       <jid xmlns='urn:xmpp:jid:0'>spammer\40evil.test@mail.example.test</jid>
--     </report>                              (only when the block is a report)
--     <forwarded xmlns='urn:xmpp:forward:0'>…</forwarded>
--                                            (the reported message, when the
--                                             report names one the archive holds)
--     <blocked xmlns='urn:xmpp:mail:0' by='alice@example.test'
--              jid='spammer\40evil.test@mail.example.test'/>
--   </message>
--
-- An unblock carries <unblocked by='…' jid='…'/> instead, without a jid
-- when the user emptied her whole blocklist. The <report/> and
-- <forwarded/> have the shape of prosody-modules' mod_report_forward, so
-- facteur reads both. See doc/xmpp-mail.md, "Spam feedback".
--
-- Configuration, under the VirtualHost whose users have mail:
--   modules_enabled = { …; "blocklist"; "mail_feedback" }
--   mail_feedback_gateway = "mail.example.test"
--
-- This file is part of facteur (MPL-2.0, see LICENSE).

local st = require "util.stanza";
local jid_util = require "util.jid";
local new_id = require "util.id".short;
local datetime = require "util.datetime";

local gateway = module:get_option_string("mail_feedback_gateway");
if not gateway then
	module:log("error", "mail_feedback_gateway is not set: no block reaches the mail gateway");
	return;
end
gateway = jid_util.prep(gateway);

local NS_MAIL = "urn:xmpp:mail:0";
local NS_REPORTING = "urn:xmpp:reporting:1";
local NS_REPORTING_0 = "urn:xmpp:reporting:0";
local NS_SID = "urn:xmpp:sid:0";

-- Where mod_mam keeps messages, to forward the one a report names.
local archive = module:open_store("archive", "archive");

-- The report of a block item, in XEP-0377's current shape; the older
-- urn:xmpp:reporting:0 named its reason with a child element.
local function report_of(item, item_jid)
	local report = item:get_child("report", NS_REPORTING);
	local out;
	if report then
		out = st.clone(report);
	else
		local old = item:get_child("report", NS_REPORTING_0);
		if not old then return nil; end
		local reason = old:get_child("abuse") and "urn:xmpp:reporting:abuse" or "urn:xmpp:reporting:spam";
		out = st.stanza("report", { xmlns = NS_REPORTING, reason = reason });
		local text = old:get_child_text("text") or old:get_child_text("reason");
		if text then out:text_tag("text", text); end
	end
	out:text_tag("jid", item_jid, { xmlns = "urn:xmpp:jid:0" });
	return out, report or item:get_child("report", NS_REPORTING_0);
end

-- The archived message a report names by its stanza-id, if the archive
-- holds it and it came from the reported JID.
local function reported_message(username, report, item_jid)
	if not report then return nil; end
	for sid in report:childtags("stanza-id", NS_SID) do
		local ok, message, when, with = pcall(archive.get, archive, username, sid.attr.id);
		if ok and message and jid_util.bare(with or "") == item_jid then
			message.attr.xmlns = "jabber:client";
			return st.stanza("forwarded", { xmlns = "urn:xmpp:forward:0" })
				:tag("delay", { xmlns = "urn:xmpp:delay", stamp = datetime.datetime(when) }):up()
				:add_child(message);
		end
	end
	return nil;
end

local function tell_gateway(action, username, item_jid, report, forwarded)
	local message = st.message({ from = module.host, to = gateway, id = new_id() });
	if report then message:add_child(report); end
	if forwarded then message:add_child(forwarded); end
	message:tag(action, { xmlns = NS_MAIL, by = username .. "@" .. module.host, jid = item_jid }):up();
	module:log("debug", "Telling %s that %s@%s %s %s", gateway, username, module.host, action, item_jid or "everything");
	module:send(message);
end

local function on_blocking(event)
	local origin, stanza = event.origin, event.stanza;
	local action = stanza.tags[1];
	local username = origin.username;
	if not (action and username) then return; end
	local blocking = action.name == "block";
	local told = false;
	for item in action:childtags("item") do
		local item_jid = item.attr.jid and jid_util.prep(item.attr.jid);
		if item_jid and jid_util.host(item_jid) == gateway and jid_util.node(item_jid) then
			told = true;
			if blocking then
				local report, original = report_of(item, item_jid);
				tell_gateway("blocked", username, item_jid, report, reported_message(username, original, item_jid));
			else
				tell_gateway("unblocked", username, item_jid);
			end
		end
	end
	-- An unblock without items empties the whole blocklist.
	if not blocking and not told and not action:get_child("item") then
		tell_gateway("unblocked", username, nil);
	end
	-- Nothing returned: mod_blocklist (priority -1) still does the blocking.
end

module:hook("iq-set/self/urn:xmpp:blocking:block", on_blocking, 10);
module:hook("iq-set/self/urn:xmpp:blocking:unblock", on_blocking, 10);

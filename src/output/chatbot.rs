//! Pages, follow-ups, standing findings and their resolutions → AWS Chatbot (Amazon Q
//! Developer in chat applications) custom notifications, published on the SNS topic a Slack or
//! Microsoft Teams channel configuration subscribes to; the transport is [`sns::Topic`].
//!
//! Each message is one custom notification, the raw body of a plain `Publish` (Chatbot reads
//! the message itself, so there is no per-protocol body and no subject):
//! <https://docs.aws.amazon.com/chatbot/latest/adminguide/custom-notifs.html>
//! - `version` `1.0`, `source` `custom`, and `textType` `client-markdown`, the only text type:
//!   Chatbot hands the title and description to the channel's own markdown (Slack's mrkdwn or
//!   Teams' markdown);
//! - `id` is the message's stable id (`<incident id>:<kind>`), so a repeat is recognisable;
//! - `threadId` is the incident id: the follow-up and the resolution land in the thread the
//!   page or finding opened (when the channel's preferences allow threads);
//! - `eventType` is the kind (`page`, `follow-up`, `finding`, `resolved`), and the same
//!   message attributes as the `sns` output are set for subscription filter policies;
//! - the title stays within the documented 250 characters and the description within 8,000,
//!   by listing fewer events; both are cut between whole escapes, never inside one.
//!
//! Every text that came from a record or from AWS (summaries, ARNs, user agents, event names,
//! evidence, account names) goes through [`escape`], so a value cannot add a link, a mention
//! or formatting to the message.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::sns::{self, Rendered};
use crate::finding::Level;
use crate::finding::accounts::AccountNames;
use crate::finding::alert::clean;
use crate::finding::fold::Tally;
use crate::finding::sink::{FindingMessage, FollowUp, Message, PageMessage, Resolved};

/// Chatbot's limits on the title and the description, in characters.
const MAX_TITLE: usize = 250;
const MAX_DESCRIPTION: usize = 8_000;
/// Room kept at the end of the description for the line that says what was left out.
const CLOSING_LINE: usize = 120;
/// Longest escaped record value in the description: a 10 KB user agent is noise in a chat.
const MAX_VALUE: usize = 256;
/// Longest escaped user agent on an event's line; the whole one is in the `sns` output.
const MAX_USER_AGENT: usize = 120;
/// Longest escaped summary sentence.
const MAX_SUMMARY: usize = 512;
/// Longest keyword, next step, related resource and context value.
const MAX_KEYWORD: usize = 64;
const MAX_STEP: usize = 300;
/// Events listed on a page; the rest are counted.
const PAGE_EVENTS: usize = 10;
/// Next steps shown: a chat message is for the first few things to do.
const MAX_STEPS: usize = 5;
/// Values listed per tally in a follow-up.
const TOP: usize = 5;

/// A custom notification, field names as Chatbot spells them.
#[derive(Serialize)]
struct Notification<'a> {
    version: &'static str,
    source: &'static str,
    id: String,
    content: Content,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Content {
    text_type: &'static str,
    title: String,
    description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    next_steps: Vec<String>,
    keywords: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    /// The incident: every message of one incident shares its thread.
    thread_id: &'a str,
    summary: String,
    event_type: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_resources: Vec<String>,
    /// String values only, as Chatbot requires.
    additional_context: BTreeMap<&'static str, String>,
}

/// Makes record text inert in Slack's mrkdwn and in Teams' markdown, at most `max` characters
/// long (cut between whole escapes and marked with `…`):
/// - control characters become spaces (a line break would start a quote or a list), and
///   bidirectional overrides and zero-width characters are dropped, so what a reader sees is
///   what the record says;
/// - `&`, `<` and `>` become `&amp;`, `&lt;` and `&gt;`, Slack's own escapes: every Slack link
///   and mention (`<http://x|text>`, `<!channel>`, `<@U123>`) starts with `<`, and Slack has no
///   backslash escape;
/// - markdown punctuation ``\ * _ ~ ` [ ] ( ) # | !`` gets a backslash, markdown's escape, so no
///   value opens a link (`[text](url)`), an image, code, emphasis or a table in Teams. Slack's
///   mrkdwn has no such escape and shows the backslash: some clutter, and at worst emphasis,
///   which is cosmetic; Slack's links and mentions are the angle brackets, handled above;
/// - `@` is followed by a zero-width space, which breaks `@here`, `@channel`, `@user` and
///   e-mail autolinks in both apps while the text still reads the same;
/// - `http://` and `https://` are defanged to `hxxp://` and `hxxps://`, as threat reports
///   write them: the address stays readable and copyable, but no chat app links it, and
///   nothing invisible lands in a pasted address. A bare domain may still be linked by the
///   chat app; it then shows exactly where it goes, which is all a disguised link hides.
pub fn escape(text: &str, max: usize) -> String {
    // Invisible characters go first, so none can hide a scheme from the defanging.
    let visible: String = clean(text).chars().filter(|c| !invisible(*c)).collect();
    let text = defang(&visible);
    let mut out = String::new();
    let mut used = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let mut piece = [0u8; 4];
        let escaped: &str = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '@' => "@\u{200b}",
            '\\' | '*' | '_' | '~' | '`' | '[' | ']' | '(' | ')' | '#' | '|' | '!' => {
                piece[0] = b'\\';
                piece[1] = c as u8;
                std::str::from_utf8(&piece[..2]).expect("two ASCII bytes")
            }
            c => c.encode_utf8(&mut piece),
        };
        let len = escaped.chars().count();
        // The ellipsis needs one character, unless this piece is the last one.
        let room = usize::from(chars.peek().is_some());
        if used + len + room > max {
            if used < max {
                out.push('…');
            }
            break;
        }
        out.push_str(escaped);
        used += len;
    }
    out
}

/// Zero-width and invisible formatting characters (`clean` already turned controls and
/// bidirectional overrides into spaces).
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}'
    )
}

/// `http://` and `https://`, in any case, written `hxxp://` and `hxxps://`.
fn defang(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let mut i = 0;
    while i + 7 <= bytes.len() {
        let rest = &bytes[i..];
        let scheme = rest[..7].eq_ignore_ascii_case(b"http://")
            || (rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"https://"));
        if scheme {
            bytes[i + 1] = b'x';
            bytes[i + 2] = b'x';
            i += 7;
        } else {
            i += 1;
        }
    }
    String::from_utf8(bytes).expect("only ASCII bytes were replaced, by ASCII bytes")
}

/// The account as people know it: `name (id)`, or the id, escaped.
fn account_label(names: &AccountNames, account: &str) -> String {
    match names.name(account) {
        Some(name) => format!(
            "{} ({})",
            escape(&name, MAX_KEYWORD),
            escape(account, MAX_KEYWORD)
        ),
        None => escape(account, MAX_KEYWORD),
    }
}

/// The description's lines, kept within Chatbot's limit with room for a closing line.
#[derive(Default)]
struct Description {
    text: String,
    chars: usize,
}

impl Description {
    /// Adds a line if it fits before the closing line's room; says whether it did.
    fn line(&mut self, line: &str) -> bool {
        let len = line.chars().count() + usize::from(!self.text.is_empty());
        if self.chars + len > MAX_DESCRIPTION - CLOSING_LINE {
            return false;
        }
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(line);
        self.chars += len;
        true
    }

    /// Adds the closing line (our own short text) in the room kept for it.
    fn close(mut self, line: &str) -> String {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.extend(line.chars().take(CLOSING_LINE - 1));
        self.text
    }
}

/// `*Label:* value`: the label is ours, the value already escaped.
fn field(label: &str, value: &str) -> String {
    format!("*{label}:* {value}")
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

fn emoji(level: Level) -> &'static str {
    match level {
        Level::Critical | Level::High => ":rotating_light:",
        Level::Medium => ":warning:",
        Level::Low | Level::Informational => ":information_source:",
    }
}

/// A title within Chatbot's limit: the escaped parts were cut on their own, so only our text
/// can be cut here, and it holds no escapes.
fn title(text: String) -> String {
    if text.chars().count() <= MAX_TITLE {
        text
    } else {
        let mut cut: String = text.chars().take(MAX_TITLE - 1).collect();
        // A cut right after a backslash would escape the ellipsis instead.
        if cut.ends_with('\\') {
            cut.pop();
        }
        cut.push('…');
        cut
    }
}

fn steps(next_steps: &[String]) -> Vec<String> {
    next_steps
        .iter()
        .take(MAX_STEPS)
        .map(|s| escape(s, MAX_STEP))
        .collect()
}

fn keywords(level: Level, rule: &str, account: &str) -> Vec<String> {
    vec![
        level.as_str().to_owned(),
        escape(rule, MAX_KEYWORD),
        escape(account, MAX_KEYWORD),
    ]
}

/// The context every message carries, as Chatbot's string map.
fn context(
    level: Level,
    rule: &str,
    account: &str,
    names: &AccountNames,
    incident_id: &str,
    kind: &'static str,
) -> BTreeMap<&'static str, String> {
    let mut c = BTreeMap::new();
    c.insert("kind", kind.to_owned());
    c.insert("level", level.as_str().to_owned());
    c.insert("rule", escape(rule, MAX_VALUE));
    c.insert("account_id", escape(account, MAX_KEYWORD));
    if let Some(name) = names.name(account) {
        c.insert("account_name", escape(&name, MAX_VALUE));
    }
    c.insert("incident_id", escape(incident_id, MAX_VALUE));
    c
}

/// Renders any message as a Chatbot custom notification for an SNS topic.
pub fn render(message: &Message, names: &AccountNames) -> Rendered {
    let (content, metadata) = match message {
        Message::Page(p) => page(p, names),
        Message::FollowUp(f) => follow_up(f, names),
        Message::Finding(f) => finding(f, names),
        Message::Resolved(r) => resolved(r, names),
    };
    let notification = Notification {
        version: "1.0",
        source: "custom",
        id: message.id(),
        content,
        metadata,
    };
    Rendered {
        subject: None,
        message: serde_json::to_string(&notification)
            .expect("a notification of strings, lists and string maps serialises"),
        per_protocol: false,
        attributes: sns::attributes(
            message.level(),
            message.rule(),
            message.account(),
            message.incident_id(),
            message.kind(),
        ),
    }
}

fn page<'a>(p: &'a PageMessage, names: &AccountNames) -> (Content, Metadata<'a>) {
    let fold = &p.fold;
    let key = &fold.key;
    let first = &fold.alerts[0];
    let level = first.level;
    let count = fold.stats.count.max(1);
    let account = account_label(names, &key.account);
    let rule = escape(&key.rule, MAX_KEYWORD);
    let mut headline = format!("[{}] {rule} in {account}", level.as_str().to_uppercase());
    if count > 1 {
        let _ = write!(headline, " (x{count})");
    }

    let mut d = Description::default();
    let mut summary = escape(&first.summary, MAX_SUMMARY);
    if count > 1 {
        let _ = write!(summary, " (and {} more like it)", count - 1);
    }
    d.line(&summary);
    d.line(&field(
        "Rule",
        &format!("{rule} ({})", escape(&first.title, MAX_VALUE)),
    ));
    d.line(&field("Principal", &escape(&key.principal, MAX_VALUE)));
    if let Some(arn) = first
        .principal_arn
        .as_deref()
        .filter(|a| *a != key.principal)
    {
        d.line(&field("Caller", &escape(arn, MAX_VALUE)));
    }
    d.line(&field(
        "Alerts",
        &format!(
            "{count}, first {}, last {}",
            escape(or_dash(fold.stats.first_time.as_deref()), MAX_KEYWORD),
            escape(or_dash(fold.stats.last_time.as_deref()), MAX_KEYWORD),
        ),
    ));
    d.line(&field("Incident", &escape(&p.incident_id, MAX_VALUE)));
    d.line("*Events:*");
    let mut listed = 0u64;
    for a in fold.alerts.iter().take(PAGE_EVENTS) {
        let line = format!(
            "• {} {} ({}) from {} in {}, ua {}",
            escape(or_dash(a.event_time.as_deref()), MAX_KEYWORD),
            escape(or_dash(a.event_name.as_deref()), MAX_KEYWORD),
            escape(or_dash(a.event_source.as_deref()), MAX_KEYWORD),
            escape(or_dash(a.source_ip.as_deref()), MAX_KEYWORD),
            escape(or_dash(a.aws_region.as_deref()), MAX_KEYWORD),
            escape(or_dash(a.user_agent.as_deref()), MAX_USER_AGENT),
        );
        if !d.line(&line) {
            break;
        }
        listed += 1;
    }
    let left_out = count.saturating_sub(listed);
    let description = if left_out > 0 {
        d.close(&format!("…and {left_out} more not listed"))
    } else {
        d.text
    };

    let mut related = Vec::new();
    for arn in [Some(key.principal.as_str()), first.principal_arn.as_deref()]
        .into_iter()
        .flatten()
        .filter(|a| a.starts_with("arn:"))
    {
        let arn = escape(arn, MAX_VALUE);
        if !related.contains(&arn) {
            related.push(arn);
        }
    }
    let mut ctx = context(
        level,
        &key.rule,
        &key.account,
        names,
        &p.incident_id,
        "page",
    );
    ctx.insert("count", count.to_string());
    if let Some(t) = &fold.stats.first_time {
        ctx.insert("first_time", escape(t, MAX_KEYWORD));
    }
    if let Some(t) = &fold.stats.last_time {
        ctx.insert("last_time", escape(t, MAX_KEYWORD));
    }
    (
        Content {
            text_type: "client-markdown",
            title: title(format!("{} {headline}", emoji(level))),
            description,
            next_steps: steps(&p.next_steps),
            keywords: keywords(level, &key.rule, &key.account),
        },
        Metadata {
            thread_id: &p.incident_id,
            summary: title(headline),
            event_type: "page",
            related_resources: related,
            additional_context: ctx,
        },
    )
}

/// `a (3), b (1), 2 more`, escaped.
fn listing(t: &Tally) -> String {
    let top = t.top(TOP);
    let mut parts: Vec<String> = top
        .iter()
        .map(|(v, n)| format!("{} ({n})", escape(v, MAX_KEYWORD)))
        .collect();
    let shown: u64 = top.iter().map(|(_, n)| n).sum();
    let total: u64 = t.values.iter().map(|(_, n)| n).sum::<u64>() + t.others;
    if total > shown {
        parts.push(format!("{} more", total - shown));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

fn follow_up<'a>(f: &'a FollowUp, names: &AccountNames) -> (Content, Metadata<'a>) {
    let key = &f.key;
    let account = account_label(names, &key.account);
    let rule = escape(&key.rule, MAX_KEYWORD);
    let paged_at = sns::rfc3339(f.paged_at);
    let headline = format!(
        "[{}] follow-up: {rule} in {account} (+{})",
        f.level.as_str().to_uppercase(),
        f.stats.count
    );
    let mut d = Description::default();
    d.line(&format!(
        "{} more alerts after the page at {paged_at}, first {}, last {}",
        f.stats.count,
        escape(or_dash(f.stats.first_time.as_deref()), MAX_KEYWORD),
        escape(or_dash(f.stats.last_time.as_deref()), MAX_KEYWORD),
    ));
    d.line(&field("Paged", &escape(&f.paged_summary, MAX_SUMMARY)));
    d.line(&field(
        "Rule",
        &format!("{rule} ({})", escape(&f.title, MAX_VALUE)),
    ));
    d.line(&field("Principal", &escape(&key.principal, MAX_VALUE)));
    d.line(&field("Incident", &escape(&f.incident_id, MAX_VALUE)));
    d.line(&field("Event names", &listing(&f.stats.event_names)));
    d.line(&field("Regions", &listing(&f.stats.regions)));
    d.line(&field("Source IPs", &listing(&f.stats.source_ips)));
    d.line(&field("Sessions", &listing(&f.stats.sessions)));
    d.line(&field("Log files", &f.sources.to_string()));

    let related = if key.principal.starts_with("arn:") {
        vec![escape(&key.principal, MAX_VALUE)]
    } else {
        Vec::new()
    };
    let mut ctx = context(
        f.level,
        &key.rule,
        &key.account,
        names,
        &f.incident_id,
        "follow-up",
    );
    ctx.insert("count", f.stats.count.to_string());
    ctx.insert("paged_at", paged_at);
    (
        Content {
            text_type: "client-markdown",
            title: title(format!(":repeat: {headline}")),
            description: d.text,
            next_steps: steps(&f.next_steps),
            keywords: keywords(f.level, &key.rule, &key.account),
        },
        Metadata {
            thread_id: &f.incident_id,
            summary: title(headline),
            event_type: "follow-up",
            related_resources: related,
            additional_context: ctx,
        },
    )
}

fn finding<'a>(opened: &'a FindingMessage, names: &AccountNames) -> (Content, Metadata<'a>) {
    let f = &opened.finding;
    let account = account_label(names, &f.account);
    let check = escape(&f.check, MAX_KEYWORD);
    let headline = format!(
        "[{}] finding: {check} in {account}",
        f.level.as_str().to_uppercase()
    );
    let mut d = Description::default();
    d.line(&escape(&f.title, MAX_SUMMARY));
    d.line(&field("Check", &check));
    d.line(&field("Resource", &escape(&f.resource, MAX_VALUE)));
    d.line(&field("Evidence", &escape(&f.evidence, MAX_SUMMARY)));
    d.line(&field("Incident", &escape(&opened.incident_id, MAX_VALUE)));
    let mut ctx = context(
        f.level,
        &f.check,
        &f.account,
        names,
        &opened.incident_id,
        "finding",
    );
    ctx.insert("resource", escape(&f.resource, MAX_VALUE));
    (
        Content {
            text_type: "client-markdown",
            title: title(format!("{} {headline}", emoji(f.level))),
            description: d.text,
            next_steps: steps(&f.next_steps),
            keywords: keywords(f.level, &f.check, &f.account),
        },
        Metadata {
            thread_id: &opened.incident_id,
            summary: title(headline),
            event_type: "finding",
            related_resources: vec![escape(&f.resource, MAX_VALUE)],
            additional_context: ctx,
        },
    )
}

fn resolved<'a>(r: &'a Resolved, names: &AccountNames) -> (Content, Metadata<'a>) {
    let f = &r.finding;
    let account = account_label(names, &f.account);
    let check = escape(&f.check, MAX_KEYWORD);
    let resource = escape(&f.resource, MAX_VALUE);
    let (opened_at, resolved_at) = (sns::rfc3339(r.opened_at), sns::rfc3339(r.resolved_at));
    let headline = format!("[RESOLVED] {check} in {account}");
    let mut d = Description::default();
    d.line(&format!(
        "Fixed: {check} for {resource} no longer fails (seen {resolved_at})"
    ));
    d.line(&field(
        "Check",
        &format!("{check} ({})", escape(&f.title, MAX_VALUE)),
    ));
    d.line(&field("Resource", &resource));
    d.line(&field("Opened", &opened_at));
    d.line(&field(
        "Fixed",
        &format!("{resolved_at} (seen by {})", escape(&r.by, MAX_VALUE)),
    ));
    d.line(&field(
        "Evidence when opened",
        &escape(&f.evidence, MAX_SUMMARY),
    ));
    d.line(&field("Incident", &escape(&r.incident_id, MAX_VALUE)));
    let mut ctx = context(
        f.level,
        &f.check,
        &f.account,
        names,
        &r.incident_id,
        "resolved",
    );
    ctx.insert("resource", resource.clone());
    ctx.insert("opened_at", opened_at);
    ctx.insert("resolved_at", resolved_at);
    (
        Content {
            text_type: "client-markdown",
            title: title(format!(":white_check_mark: {headline}")),
            description: d.text,
            next_steps: Vec::new(),
            keywords: keywords(f.level, &f.check, &f.account),
        },
        Metadata {
            thread_id: &r.incident_id,
            summary: title(headline),
            event_type: "resolved",
            related_resources: vec![resource],
            additional_context: ctx,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: usize = usize::MAX;

    #[test]
    fn markdown_links_and_images_are_escaped() {
        assert_eq!(
            escape("[click](hxxp)", ALL),
            r"\[click\]\(hxxp\)",
            "no link: both brackets and parentheses are escaped"
        );
        assert_eq!(escape("![x](y)", ALL), r"\!\[x\]\(y\)");
    }

    #[test]
    fn slack_links_and_mentions_cannot_open() {
        let e = escape("<!channel> <!here|here> <@U123> <http://evil|Sign in>", ALL);
        assert!(!e.contains('<') && !e.contains('>'), "{e}");
        assert_eq!(
            e,
            "&lt;\\!channel&gt; &lt;\\!here\\|here&gt; &lt;@\u{200b}U123&gt; \
             &lt;hxxp://evil\\|Sign in&gt;"
        );
        // An entity written by the attacker stays text: its `&` is escaped too.
        assert_eq!(escape("&lt;!here&gt;", ALL), r"&amp;lt;\!here&amp;gt;");
    }

    #[test]
    fn at_mentions_and_email_autolinks_are_broken() {
        assert_eq!(escape("@here", ALL), "@\u{200b}here");
        assert_eq!(
            escape("@channel @everyone", ALL),
            "@\u{200b}channel @\u{200b}everyone"
        );
        assert_eq!(
            escape("alice@example.com", ALL),
            "alice@\u{200b}example.com"
        );
    }

    #[test]
    fn urls_are_defanged_in_any_case() {
        assert_eq!(
            escape("see http://evil.example/a and HTTPS://x.y", ALL),
            "see hxxp://evil.example/a and HxxPS://x.y"
        );
        assert_eq!(escape("hthttp://x", ALL), "hthxxp://x");
        assert_eq!(escape("http:/", ALL), "http:/");
        // An attacker's zero-width space does not survive to hide a scheme from the defanging
        // or to make two values look alike.
        assert_eq!(escape("ht\u{200b}tp://x", ALL), "hxxp://x");
    }

    #[test]
    fn formatting_characters_are_escaped() {
        assert_eq!(
            escape(r"*bold* _it_ ~del~ `code` # h | t \ ", ALL),
            r"\*bold\* \_it\_ \~del\~ \`code\` \# h \| t \\ "
        );
        assert_eq!(escape("```\nblock\n```", ALL), r"\`\`\` block \`\`\`");
    }

    #[test]
    fn control_and_invisible_characters_are_removed() {
        assert_eq!(escape("a\nb\r\nc\td", ALL), "a b  c d");
        assert_eq!(escape("ab\u{202e}cd\u{feff}e\u{00ad}", ALL), "ab cde");
        assert_eq!(escape("> quote", ALL), "&gt; quote");
    }

    #[test]
    fn cuts_fall_between_whole_escapes() {
        assert_eq!(escape("abcdef", 6), "abcdef");
        assert_eq!(escape("abcdefg", 6), "abcde…");
        // `&lt;` is four characters: a cut never leaves part of it.
        assert_eq!(escape("ab<<<<", 6), "ab…");
        assert_eq!(escape("ab****", 7), r"ab\*\*…");
        for max in 0..40 {
            let e = escape(&"<*@h".repeat(20), max);
            assert!(e.chars().count() <= max, "{max}: {e}");
            assert!(!e.ends_with('\\') && !e.ends_with("&l"), "{max}: {e}");
        }
        let long = escape(&"é".repeat(10_000), MAX_VALUE);
        assert_eq!(long.chars().count(), MAX_VALUE);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn descriptions_stop_at_a_whole_line_within_the_limit() {
        let mut d = Description::default();
        let line = "x".repeat(999);
        let mut added = 0;
        while d.line(&line) {
            added += 1;
        }
        assert_eq!(
            added, 7,
            "7 lines of 1,000 with their breaks leave room to close"
        );
        let text = d.close("…and 3 more not listed");
        assert!(text.chars().count() <= MAX_DESCRIPTION);
        assert!(text.ends_with("\n…and 3 more not listed"));
    }

    #[test]
    fn titles_never_end_in_a_dangling_backslash() {
        let t = title(format!(
            "{}\\*{}",
            "a".repeat(MAX_TITLE - 2),
            "b".repeat(10)
        ));
        assert!(t.chars().count() <= MAX_TITLE);
        assert!(t.ends_with('…') && !t.ends_with("\\…"), "{t}");
    }
}

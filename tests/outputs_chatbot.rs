//! The `chatbot` output's custom notifications: every kind of message checked against a JSON
//! Schema written from AWS's documentation (tests/fixtures/chatbot/custom-notification.schema.json),
//! hostile record text shown to be inert, the thread a follow-up and a resolution share with
//! what opened the incident, and one delivery through SNS on moto server to a subscribed queue.

mod support;

use serde_json::{Value, json};
use support::{Moto, create_topic};
use trailwarden::finding::accounts::AccountNames;
use trailwarden::finding::alert::Alert;
use trailwarden::finding::fold::{Fold, Folder, Stats};
use trailwarden::finding::sink::{FollowUp, Message, Opened, Page, Resolved};
use trailwarden::finding::{IncidentKey, Level, Standing};
use trailwarden::output::Output;
use trailwarden::output::chatbot;
use trailwarden::output::sns::{Rendered, Topic};
use trailwarden::telemetry::Metrics;

const ACCOUNT: &str = "111122223333";
const ROOT: &str = "arn:aws:iam::111122223333:root";

/// Text an attacker can put in a record: a markdown link, Slack mentions and a link, a Teams
/// style mention, backticks and line breaks that would start a quote or a code block.
const HOSTILE: &str = "[click](http://evil.example/login) @here <!channel> <@U0123> \
                       <https://evil.example|Sign in> `rm -rf /`\n> quoted\n```\ncode\n```";

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chatbot/custom-notification.schema.json"
    ))
    .expect("schema fixture");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::meta::validate(&schema).expect("the schema is a valid 2020-12 schema");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// The notification document, after checking it against the schema with every error listed.
fn valid(validator: &jsonschema::Validator, message: &str) -> Value {
    let doc: Value = serde_json::from_str(message).expect("the message is JSON");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    doc
}

/// A rendered message as a plain Publish: no subject, one body for every subscriber.
fn notification(validator: &jsonschema::Validator, r: &Rendered) -> Value {
    assert!(r.subject.is_none(), "Chatbot reads no subject");
    assert!(!r.per_protocol, "Chatbot reads the raw message");
    valid(validator, &r.message)
}

fn names() -> AccountNames {
    AccountNames::new([(ACCOUNT.to_owned(), "prod-payments".to_owned())])
}

fn alert(rule: &str, level: Level, i: usize) -> Alert {
    Alert {
        rule: rule.into(),
        title: "Root user signed in to the console".into(),
        level,
        tags: vec![],
        event_id: Some(format!("evt-{i}")),
        event_time: Some(format!("2026-11-20T09:{:02}:00Z", i % 60)),
        event_name: Some("ConsoleLogin".into()),
        event_source: Some("signin.amazonaws.com".into()),
        aws_region: Some("us-east-1".into()),
        account_id: Some(ACCOUNT.into()),
        principal_type: Some("Root".into()),
        principal_arn: Some(ROOT.into()),
        source_ip: Some(format!("198.51.100.{}", i % 250)),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        error_code: None,
        mfa_used: Some(false),
        summary: "Root user signed in to the console without MFA".into(),
        source: "s3://trail/k".into(),
        count: None,
        event_ids: None,
        distinct_values: None,
        root_only_task: None,
        assumed_root: None,
        next_steps: vec![],
    }
}

fn key(rule: &str) -> IncidentKey {
    IncidentKey {
        rule: rule.into(),
        account: ACCOUNT.into(),
        principal: ROOT.into(),
    }
}

fn fold_of(alerts: Vec<Alert>) -> Fold {
    let mut folder = Folder::new();
    for a in alerts {
        folder.add(key(&a.rule.clone()), a);
    }
    folder.finish().remove(0)
}

fn page(incident_id: &str, fold: &Fold, next_steps: &[String]) -> Message {
    Message::page(Page {
        incident_id,
        fold,
        next_steps,
    })
}

fn description(doc: &Value) -> &str {
    doc["content"]["description"].as_str().expect("description")
}

#[test]
fn a_root_sign_in_page_is_a_custom_notification() {
    let v = schema();
    let fold = fold_of(vec![alert("root-console-login", Level::Critical, 0)]);
    let steps = vec![
        "Confirm with the account owner that the sign-in was theirs".to_owned(),
        "Enable MFA on the root user".to_owned(),
    ];
    let message = page("inc-root", &fold, &steps);
    let r = chatbot::render(&message, &names());
    let doc = notification(&v, &r);

    assert_eq!(doc["version"], "1.0");
    assert_eq!(doc["source"], "custom");
    assert_eq!(doc["id"], "inc-root:page");
    assert_eq!(doc["content"]["textType"], "client-markdown");
    assert_eq!(
        doc["content"]["title"],
        ":rotating_light: [CRITICAL] root-console-login in prod-payments (111122223333)"
    );
    assert_eq!(
        doc["content"]["nextSteps"],
        json!([
            "Confirm with the account owner that the sign-in was theirs",
            "Enable MFA on the root user"
        ])
    );
    assert_eq!(
        doc["content"]["keywords"],
        json!(["critical", "root-console-login", ACCOUNT])
    );
    assert_eq!(doc["metadata"]["threadId"], "inc-root");
    assert_eq!(doc["metadata"]["eventType"], "page");
    assert_eq!(doc["metadata"]["relatedResources"], json!([ROOT]));
    assert_eq!(
        doc["metadata"]["additionalContext"]["account_name"],
        "prod-payments"
    );
    assert_eq!(doc["metadata"]["additionalContext"]["count"], "1");

    let d = description(&doc);
    assert!(
        d.starts_with("Root user signed in to the console without MFA\n"),
        "{d}"
    );
    assert!(
        d.contains("*Principal:* arn:aws:iam::111122223333:root"),
        "{d}"
    );
    assert!(
        d.contains("*Alerts:* 1, first 2026-11-20T09:00:00Z, last 2026-11-20T09:00:00Z"),
        "{d}"
    );
    // The event's line: time, name, source, IP, region, and the user agent escaped.
    assert!(
        d.contains(
            "• 2026-11-20T09:00:00Z ConsoleLogin (signin.amazonaws.com) from 198.51.100.0 \
             in us-east-1, ua Mozilla/5.0 \\(X11; Linux x86\\_64\\)"
        ),
        "{d}"
    );
    assert!(!d.contains("more not listed"), "{d}");

    // The same message attributes as the `sns` output, for filter policies.
    for (name, value) in [
        ("level", "critical"),
        ("rule", "root-console-login"),
        ("account_id", ACCOUNT),
        ("incident_id", "inc-root"),
        ("kind", "page"),
    ] {
        assert!(
            r.attributes.contains(&(name, value.to_owned())),
            "{name}: {:?}",
            r.attributes
        );
    }
}

#[test]
fn hostile_record_text_cannot_link_mention_or_format() {
    let v = schema();
    let mut a = alert("root-console-login", Level::Critical, 0);
    a.summary = format!("Root user signed in: {HOSTILE}");
    a.principal_arn = Some(format!("{ROOT}/<@U0999>"));
    a.event_name = Some("*ConsoleLogin*".into());
    a.source_ip = Some("_198.51.100.7_ ~x~ #h |t| ![img](http://evil.example/x.png)".into());
    a.user_agent = Some(format!("{HOSTILE} ").repeat(10_240 / HOSTILE.len() + 1));
    assert!(a.user_agent.as_ref().expect("ua").len() >= 10_240);
    let fold = fold_of(vec![a]);
    let steps = vec![format!("Check {HOSTILE}")];
    let names = AccountNames::new([(ACCOUNT.to_owned(), "prod <!here> [x](http://e)".to_owned())]);
    let r = chatbot::render(&page("inc-evil", &fold, &steps), &names);
    let doc = notification(&v, &r);

    // Nowhere in the notification, not even in the metadata, is there a link, a mention or a
    // code fence the chat app would act on.
    for inert in [
        "http://", "https://", "](", "<!", "<@", "<h", "@here", "@channel", "```",
    ] {
        assert!(
            !r.message.contains(inert),
            "{inert:?} survived: {}",
            r.message
        );
    }
    let d = description(&doc);
    assert!(
        d.contains(
            "\\[click\\]\\(hxxp://evil.example/login\\) @\u{200b}here &lt;\\!channel&gt; \
             &lt;@\u{200b}U0123&gt; &lt;hxxps://evil.example\\|Sign in&gt; \\`rm -rf /\\` \
             &gt; quoted \\`\\`\\` code \\`\\`\\`"
        ),
        "{d}"
    );
    assert!(d.contains("\\*ConsoleLogin\\*"), "{d}");
    assert!(
        d.contains("\\_198.51.100.7\\_ \\~x\\~ \\#h \\|t\\| \\!\\[img\\]\\(hxxp://evil"),
        "{d}"
    );
    assert!(d.contains("&lt;@\u{200b}U0999&gt;"), "{d}");
    // Line breaks in record text do not start lines: every line is one of ours.
    for line in d.lines() {
        assert!(
            line.starts_with('*')
                || line.starts_with('•')
                || line.starts_with("Root user signed in"),
            "a line the record started: {line:?}\n{d}"
        );
    }
    // The 10 KB user agent is shortened on its line, and the description stays in bounds.
    let ua_line = d.lines().find(|l| l.starts_with('•')).expect("event line");
    assert!(ua_line.chars().count() < 600, "{ua_line}");
    assert!(ua_line.ends_with('…'), "{ua_line}");
    assert!(d.chars().count() <= 8_000);

    let title = doc["content"]["title"].as_str().expect("title");
    assert_eq!(
        title,
        ":rotating_light: [CRITICAL] root-console-login in prod &lt;\\!here&gt; \\[x\\]\\(hxxp://e\\) (111122223333)"
    );
    let step = doc["content"]["nextSteps"][0].as_str().expect("step");
    assert!(step.starts_with("Check \\[click\\]\\(hxxp://"), "{step}");
    assert!(
        doc["metadata"]["relatedResources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|r| r.as_str() == Some("arn:aws:iam::111122223333:root/&lt;@\u{200b}U0999&gt;")),
        "{:#}",
        doc["metadata"]
    );
}

#[test]
fn a_brute_force_page_lists_some_events_and_counts_the_rest() {
    let v = schema();
    let alerts: Vec<Alert> = (0..500)
        .map(|i| {
            let mut a = alert("console-login-failures", Level::High, i);
            a.summary = "Failed console sign-in for user admin".into();
            a.principal_arn = Some(ROOT.into());
            a.user_agent = Some(format!("{HOSTILE}{i}").repeat(200));
            a
        })
        .collect();
    let fold = fold_of(alerts);
    let r = chatbot::render(&page("inc-brute", &fold, &[]), &AccountNames::default());
    let doc = notification(&v, &r);
    assert_eq!(
        doc["content"]["title"],
        ":rotating_light: [HIGH] console-login-failures in 111122223333 (x500)"
    );
    assert!(doc["content"].get("nextSteps").is_none());
    let d = description(&doc);
    assert!(
        d.starts_with("Failed console sign-in for user admin (and 499 more like it)\n"),
        "{d}"
    );
    assert_eq!(d.lines().filter(|l| l.starts_with('•')).count(), 10, "{d}");
    assert!(d.ends_with("…and 490 more not listed"), "{d}");
    assert_eq!(doc["metadata"]["additionalContext"]["count"], "500");

    // Every listed value at its longest and all of it escapes: the description stays within
    // Chatbot's limit and still says how many events it left out.
    let alerts: Vec<Alert> = (0..40)
        .map(|i| {
            let mut a = alert("console-login-failures", Level::High, i);
            let worst = "<".repeat(10_000);
            a.summary = worst.clone();
            a.event_time = Some(worst.clone());
            a.event_name = Some(worst.clone());
            a.event_source = Some(worst.clone());
            a.source_ip = Some(worst.clone());
            a.aws_region = Some(worst.clone());
            a.user_agent = Some(worst.clone());
            a.principal_arn = Some(worst);
            a
        })
        .collect();
    let fold = fold_of(alerts);
    let r = chatbot::render(&page("inc-worst", &fold, &[]), &AccountNames::default());
    let doc = notification(&v, &r);
    let d = description(&doc);
    assert!(d.chars().count() <= 8_000, "{}", d.chars().count());
    assert!(d.ends_with("more not listed"), "{d}");
    assert!(!d.contains('<'));
}

fn follow_up(incident_id: &str) -> FollowUp {
    let mut stats = Stats::default();
    for i in 0..35 {
        let mut a = alert("root-console-login", Level::Critical, i);
        a.aws_region = Some(if i % 2 == 0 { "us-east-1" } else { "<!here>" }.into());
        stats.add(&a);
    }
    FollowUp {
        incident_id: incident_id.into(),
        key: key("root-console-login"),
        title: "Root user signed in to the console".into(),
        level: Level::Critical,
        next_steps: vec!["Confirm who used root and why".into()],
        paged_summary: format!("Root user signed in: {HOSTILE}"),
        paged_at: 1_763_629_200,
        paged_count: 1,
        paged_first_time: None,
        tags: vec![],
        stats,
        sources: 4,
    }
}

#[test]
fn a_follow_up_is_threaded_under_its_page() {
    let v = schema();
    let fold = fold_of(vec![alert("root-console-login", Level::Critical, 0)]);
    let paged = notification(&v, &chatbot::render(&page("inc-7", &fold, &[]), &names()));
    let r = chatbot::render(&Message::FollowUp(follow_up("inc-7")), &names());
    let doc = notification(&v, &r);

    assert_eq!(doc["metadata"]["threadId"], paged["metadata"]["threadId"]);
    assert_eq!(doc["metadata"]["threadId"], "inc-7");
    assert_eq!(doc["id"], "inc-7:follow-up");
    assert_ne!(doc["id"], paged["id"]);
    assert_eq!(doc["metadata"]["eventType"], "follow-up");
    assert_eq!(
        doc["content"]["title"],
        ":repeat: [CRITICAL] follow-up: root-console-login in prod-payments (111122223333) (+35)"
    );
    assert_eq!(
        doc["content"]["nextSteps"],
        json!(["Confirm who used root and why"])
    );
    let d = description(&doc);
    assert!(
        d.starts_with(
            "35 more alerts after the page at 2025-11-20T09:00:00Z, first 2026-11-20T09:00:00Z, \
             last 2026-11-20T09:34:00Z\n"
        ),
        "{d}"
    );
    assert!(
        d.contains("*Regions:* us-east-1 (18), &lt;\\!here&gt; (17)"),
        "{d}"
    );
    assert!(d.contains("*Event names:* ConsoleLogin (35)"), "{d}");
    assert!(d.contains("*Log files:* 4"), "{d}");
    assert!(!r.message.contains("http://") && !r.message.contains("<!"));
    assert!(r.attributes.contains(&("kind", "follow-up".to_owned())));
}

fn standing() -> Standing {
    Standing {
        check: "user-without-mfa".into(),
        account: ACCOUNT.into(),
        resource: "arn:aws:iam::111122223333:user/alice_admin".into(),
        level: Level::High,
        title: "Every IAM user with a console password has MFA (CIS 1.10)".into(),
        evidence: format!("alice_admin has a console password and no MFA device; tags: {HOSTILE}"),
        next_steps: vec!["Have the user assign an MFA device".into()],
    }
}

#[test]
fn a_posture_finding_and_its_resolution_share_a_thread() {
    let v = schema();
    let f = standing();
    let opened = Message::finding(Opened {
        incident_id: "inc-mfa",
        finding: &f,
    });
    let r = chatbot::render(&opened, &names());
    let doc = notification(&v, &r);
    assert_eq!(doc["id"], "inc-mfa:finding");
    assert_eq!(doc["metadata"]["threadId"], "inc-mfa");
    assert_eq!(doc["metadata"]["eventType"], "finding");
    assert_eq!(
        doc["content"]["title"],
        ":rotating_light: [HIGH] finding: user-without-mfa in prod-payments (111122223333)"
    );
    assert_eq!(
        doc["metadata"]["relatedResources"],
        json!(["arn:aws:iam::111122223333:user/alice\\_admin"])
    );
    let d = description(&doc);
    assert!(
        d.starts_with("Every IAM user with a console password has MFA \\(CIS 1.10\\)\n"),
        "{d}"
    );
    assert!(
        d.contains(
            "*Evidence:* alice\\_admin has a console password and no MFA device; tags: \\[click\\]"
        ),
        "{d}"
    );
    assert!(!r.message.contains("http://") && !r.message.contains("<!"));
    assert_eq!(
        doc["content"]["nextSteps"],
        json!(["Have the user assign an MFA device"])
    );

    let r = chatbot::render(
        &Message::Resolved(Resolved {
            incident_id: "inc-mfa".into(),
            finding: f,
            opened_at: 1_763_629_200,
            resolved_at: 1_763_632_800,
            by: "re-check after EnableMFADevice".into(),
        }),
        &names(),
    );
    let fixed = notification(&v, &r);
    assert_eq!(fixed["id"], "inc-mfa:resolved");
    assert_eq!(fixed["metadata"]["threadId"], doc["metadata"]["threadId"]);
    assert_eq!(fixed["metadata"]["eventType"], "resolved");
    assert_eq!(
        fixed["content"]["title"],
        ":white_check_mark: [RESOLVED] user-without-mfa in prod-payments (111122223333)"
    );
    assert!(fixed["content"].get("nextSteps").is_none());
    let d = description(&fixed);
    assert!(
        d.starts_with(
            "Fixed: user-without-mfa for arn:aws:iam::111122223333:user/alice\\_admin no longer \
             fails (seen 2025-11-20T10:00:00Z)\n"
        ),
        "{d}"
    );
    assert!(
        d.contains("*Fixed:* 2025-11-20T10:00:00Z (seen by re-check after EnableMFADevice)"),
        "{d}"
    );
    assert!(d.contains("*Opened:* 2025-11-20T09:00:00Z"), "{d}");
    assert_eq!(
        fixed["metadata"]["additionalContext"]["resolved_at"],
        "2025-11-20T10:00:00Z"
    );
    assert!(r.attributes.contains(&("kind", "resolved".to_owned())));
}

/// The schema is not vacuous: it rejects what AWS's documentation rules out.
#[test]
fn the_schema_rejects_what_the_documentation_rules_out() {
    let v = schema();
    let good = json!({
        "version": "1.0",
        "source": "custom",
        "content": { "description": "d" }
    });
    assert!(v.is_valid(&good));
    let mut bad = Vec::new();
    let mut with = |path: &[&str], value: Value| {
        let mut doc = good.clone();
        let (last, parents) = path.split_last().expect("a path");
        let mut at = &mut doc;
        for p in parents {
            at = at
                .as_object_mut()
                .expect("object")
                .entry(*p)
                .or_insert_with(|| json!({}));
        }
        at[*last] = value;
        bad.push((path.join("."), doc));
    };
    with(&["version"], json!("2.0"));
    with(&["source"], json!("aws.cloudwatch"));
    with(&["content", "textType"], json!("plain"));
    with(&["content", "title"], json!("t".repeat(251)));
    with(&["content", "description"], json!("d".repeat(8_001)));
    with(&["content", "description"], json!(""));
    with(&["content", "nextSteps"], json!([1]));
    with(&["content", "colour"], json!("red"));
    with(&["metadata", "additionalContext"], json!({ "count": 3 }));
    with(&["metadata", "threadId"], json!(7));
    with(&["extra"], json!(true));
    for (what, doc) in bad {
        assert!(!v.is_valid(&doc), "{what} should be rejected: {doc}");
    }
    let mut no_description = good.clone();
    no_description["content"] = json!({ "title": "t" });
    assert!(!v.is_valid(&no_description));
    let mut no_version = good;
    no_version
        .as_object_mut()
        .expect("object")
        .remove("version");
    assert!(!v.is_valid(&no_version));
}

/// One page through the real SNS transport on moto server: published to a topic a queue
/// subscribes to (raw delivery off), read back from the queue out of its SNS envelope, and
/// still a valid custom notification with its message attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_through_sns_to_a_subscribed_queue() {
    let v = schema();
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs
        .create_queue()
        .queue_name("chatbot-channel")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("queue url");
    let arn = create_topic(&sns, &sqs, &queue).await;
    let topic = Topic::new(sns, arn.clone(), Metrics::new(), chatbot::render);

    let mut a = alert("root-console-login", Level::Critical, 0);
    a.user_agent = Some(HOSTILE.into());
    let fold = fold_of(vec![a]);
    let message = page(
        "inc-moto",
        &fold,
        &["Enable MFA on the root user".to_owned()],
    );
    topic.check().await.expect("the topic exists");
    topic.deliver(&message, &names()).await.expect("published");

    let received = sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(5)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default();
    assert_eq!(received.len(), 1, "{received:?}");
    let envelope: Value =
        serde_json::from_str(received[0].body().expect("body")).expect("SNS envelope");
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["TopicArn"], arn.as_str());
    assert!(
        envelope.get("Subject").is_none_or(Value::is_null),
        "no subject: {envelope:#}"
    );
    let body = envelope["Message"].as_str().expect("Message");
    assert_eq!(
        body,
        chatbot::render(&message, &names()).message,
        "the raw notification, unchanged by SNS"
    );
    let doc = valid(&v, body);
    assert_eq!(doc["metadata"]["threadId"], "inc-moto");
    assert_eq!(doc["id"], "inc-moto:page");
    assert!(!body.contains("http://") && !body.contains("<!channel>"));
    assert_eq!(
        envelope["MessageAttributes"]["kind"],
        json!({"Type": "String", "Value": "page"})
    );
    assert_eq!(envelope["MessageAttributes"]["level"]["Value"], "critical");
}

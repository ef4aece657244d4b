//! `/metrics` as an operator's Prometheus sees it: the real binary with
//! `METRICS_LISTEN`, scraped during a small rush and after it, the text parsed
//! with a Prometheus text-format parser, and each counter checked to have
//! moved by what the test did — and nothing secret in any label.

use std::{
    collections::HashSet,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use futures::future::join_all;
use prometheus_parse::{Scrape, Value};
use wechat_ticket::links;

use crate::{
    common::{
        APPID, TOKEN, TestApp,
        fake_wechat::{CUSTOM_SEND_PATH, FakeWechat, SECRET},
        fixtures::{Window, hidden_fields, ticket_code},
        spawn_app,
        wx::{self, Reply},
    },
    serve_binary::{BIN, Server, free_port, terminate, wait_healthy},
};

/// The binary on the test's database, with `/metrics` on a port of its own.
struct Served {
    base: String,
    metrics: String,
    http: reqwest::Client,
    server: Server,
}

fn serve(app: &TestApp, fake: &FakeWechat) -> (Served, u16) {
    let (port, metrics_port) = (free_port(), free_port());
    let child = Command::new(BIN)
        .env("WECHAT_API_BASE", &fake.base)
        .env("WECHAT_APPID", APPID)
        .env("WECHAT_SECRET", SECRET)
        .env("DATABASE_URL", app.database_url())
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("WECHAT_TOKEN", TOKEN)
        // The activities start within the default 2 hours: no reminders in these counts.
        .env("REMINDER_HOURS", "0")
        .env_remove("SECRET_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run wechat-ticket");
    let served = Served {
        base: format!("http://127.0.0.1:{port}"),
        metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        server: Server(Some(child)),
    };
    (served, port)
}

impl Served {
    async fn post_wechat(&self, query: &str, xml: &str) -> (u16, String) {
        let resp = self
            .http
            .post(format!("{}/wechat?{query}", self.base))
            .header("content-type", "text/xml")
            .body(xml.to_string())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn say(&self, xml: &str) -> Reply {
        let (status, body) = self.post_wechat(&wx::signed_query(), xml).await;
        assert_eq!(status, 200, "{body}");
        Reply::parse(&body)
    }

    async fn scrape(&self) -> (String, Metrics) {
        scrape(&self.http, &self.metrics).await
    }
}

/// GETs `/metrics` and parses it as Prometheus does; returns the text too.
pub(crate) async fn scrape(http: &reqwest::Client, url: &str) -> (String, Metrics) {
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = resp.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the Prometheus text format");
    (text, Metrics(scrape))
}

pub(crate) struct Metrics(Scrape);

impl Metrics {
    /// The value of `name` with all of `labels` (0 when not yet recorded, as Prometheus reads an absent series).
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
                Value::Summary(_) => panic!("{name} is a summary, not a histogram"),
            })
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.0.samples.iter().any(|s| s.metric == name)
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let sample = self
            .0
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?}"));
        match &sample.value {
            Value::Histogram(buckets) => buckets.iter().map(|b| (b.less_than, b.count)).collect(),
            other => panic!("{name} is {other:?}, not a histogram"),
        }
    }

    fn label_values(&self) -> Vec<String> {
        self.0.samples.iter().flat_map(|s| s.labels.values().cloned().collect::<Vec<_>>()).collect()
    }
}

const MESSAGES: &str = "wechat_ticket_wechat_messages_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_small_rush_by_command_and_outcome_on_their_own_listener() {
    let app = spawn_app().await;
    let a = app.activity("gala", 10, Window::Open).await;
    let students = app.bound_students(71, 40).await;
    let fake = FakeWechat::start().await;
    let (served, port) = serve(&app, &fake);
    wait_healthy(port).await;

    // Not on the public listener, whatever path is tried.
    for path in ["/metrics", "/metrics/", "/admin/metrics"] {
        let status = served.http.get(format!("{}{path}", served.base)).send().await.unwrap().status();
        assert_eq!(status, 404, "{path} on the public listener");
    }
    let (_, before) = served.scrape().await;
    assert_eq!(before.value(MESSAGES, &[]), 0.0);
    assert!(before.has("wechat_ticket_db_pool_connections"), "pool gauges at every scrape");

    // The rush: 40 bound students for 10 places and 3 unbound ones, with
    // Prometheus scraping while it runs.
    let unbound: Vec<String> = (0..3).map(|i| format!("o-unbound-metrics-{i}")).collect();
    let rush = join_all(
        students.iter().chain(&unbound).map(|openid| wx::click(openid, &format!("BOOK_{}", a.id))).map(|xml| {
            let served = &served;
            async move { served.say(&xml).await }
        }),
    );
    let scrapes = async {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(served.scrape().await.1.value(MESSAGES, &[("command", "book")]));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    };
    let (replies, during) = tokio::join!(rush, scrapes);
    assert!(during.windows(2).all(|w| w[0] <= w[1]), "a counter only grows: {during:?}");
    let mut booked = Vec::new();
    let mut sold_out = Vec::new();
    for (reply, openid) in replies.iter().zip(students.iter().chain(&unbound)) {
        match reply {
            Reply::News { url, .. } => booked.push((openid.clone(), ticket_code(url))),
            Reply::Text(text) if text.contains("票已经抢完") => sold_out.push(openid.clone()),
            Reply::Text(text) if text.contains("绑定") => assert!(unbound.contains(openid), "{text}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((booked.len(), sold_out.len()), (10, 30));

    // A retry of one message (same MsgId): answered again, counted as a duplicate.
    let retried = wx::text_with_id(&sold_out[0], "抢票 gala", 880_001);
    served.say(&retried).await;
    served.say(&retried).await;
    // A signed query carrying a second, other message: refused as a replay.
    let query = wx::signed_query();
    assert_eq!(served.post_wechat(&query, &wx::text(&sold_out[1], "帮助")).await.0, 200);
    assert_eq!(served.post_wechat(&query, &wx::text(&sold_out[1], "抢票 gala")).await.0, 403);
    // A forged signature.
    let forged = "signature=0000&timestamp=1&nonce=2";
    assert_eq!(served.post_wechat(forged, &wx::text(&sold_out[1], "抢票 gala")).await.0, 403);
    // One joins the waiting list; a holder cancels, which promotes them. The
    // notice's customer-service message is refused (outside the 48 h window).
    fake.script(CUSTOM_SEND_PATH, serde_json::json!({"errcode": 45015, "errmsg": "response out of time limit"}));
    served.say(&wx::text(&sold_out[2], "候补 gala")).await;
    let (holder, code) = &booked[0];
    served.say(&wx::text(holder, "退票 gala")).await;
    // Two scans at a volunteer's gate: the first checks in, the second is refused.
    let out = app.cli(&["checkin-link", "create", "gala", "--gate", "北门"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let link = String::from_utf8(out.stdout).unwrap();
    let door = &link.trim()[link.find("/door/").unwrap()..];
    let scanned = &booked[1].1;
    for _ in 0..2 {
        let scan = served
            .http
            .post(format!("{}{door}/scan", served.base))
            .form(&[("code", scanned.as_str()), ("nonce", &links::nonce())])
            .send()
            .await
            .unwrap();
        assert_eq!(scan.status(), 200);
    }
    // A student's ticket page: counted under its pattern, never its code.
    assert_eq!(served.http.get(format!("{}/tickets/{}", served.base, booked[2].1)).send().await.unwrap().status(), 200);

    // The promotion's notice is sent (here: recorded as undelivered, no WeChat API) by a worker: wait for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (text, after) = loop {
        let (text, m) = served.scrape().await;
        if m.value("wechat_ticket_notifications_total", &[]) >= 1.0 || Instant::now() > deadline {
            break (text, m);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let book = |outcome: &str| after.value(MESSAGES, &[("command", "book"), ("outcome", outcome)]);
    // 40 + 3 clicks, 2 deliveries of the retried text, none of the replayed one.
    assert_eq!(book("booked"), 10.0);
    assert_eq!(book("sold_out"), 31.0, "30 in the rush and the retried text's first delivery");
    assert_eq!(book("not_bound"), 3.0);
    assert_eq!(book("duplicate"), 1.0);
    assert_eq!(after.value(MESSAGES, &[("outcome", "replay_refused")]), 1.0);
    assert_eq!(after.value(MESSAGES, &[("command", "none"), ("outcome", "bad_signature")]), 1.0);
    assert_eq!(after.value(MESSAGES, &[("command", "help")]), 1.0);
    assert_eq!(after.value(MESSAGES, &[("command", "wait"), ("outcome", "joined")]), 1.0);
    assert_eq!(after.value(MESSAGES, &[("command", "cancel"), ("outcome", "cancelled")]), 1.0);
    assert_eq!(after.value(MESSAGES, &[]), 50.0, "every message counted once");
    // The booking messages went to the database in batches: the 43 clicks, the
    // retried text's two deliveries and the replayed one (refused in its batch).
    assert_eq!(after.value("wechat_ticket_wechat_batch_messages_sum", &[]), 46.0);
    let batches = after.value("wechat_ticket_wechat_batch_messages_count", &[]);
    assert!((1.0..=46.0).contains(&batches), "{batches} batches");

    assert_eq!(after.value("wechat_ticket_bookings_total", &[("via", "wechat")]), 10.0);
    assert_eq!(after.value("wechat_ticket_cancels_total", &[("via", "wechat")]), 1.0);
    assert_eq!(after.value("wechat_ticket_waiting_promotions_total", &[]), 1.0);
    let checkins = |verdict: &str| {
        after.value("wechat_ticket_checkins_total", &[("activity", "gala"), ("gate", "北门"), ("verdict", verdict)])
    };
    assert_eq!((checkins("checked_in"), checkins("refused")), (1.0, 1.0));
    assert_eq!(after.value("wechat_ticket_notifications_total", &[("outcome", "undelivered")]), 1.0);
    let api_errors = |api: &str, errcode: &str| {
        after.value("wechat_ticket_wechat_api_errors_total", &[("api", api), ("errcode", errcode)])
    };
    assert_eq!(api_errors("message/custom/send", "45015"), 1.0);
    assert_eq!(after.value("wechat_ticket_wechat_api_errors_total", &[]), 1.0);
    assert_eq!(after.value("wechat_ticket_wechat_token_refreshes_total", &[("kind", "access_token")]), 1.0);

    // Latency per route pattern: every POST to /wechat, in buckets up to 10 s.
    let wechat =
        after.histogram("wechat_ticket_http_request_duration_seconds", &[("method", "POST"), ("route", "/wechat")]);
    let total = wechat.iter().find(|(le, _)| le.is_infinite()).expect("a +Inf bucket").1;
    assert_eq!(total, 50.0, "every POST to /wechat, the 2 refused with 403 too");
    assert!(wechat.iter().any(|(le, _)| *le == 5.0), "a 5 s bucket, WeChat's deadline: {wechat:?}");
    let statuses =
        |status: &str| after.value("wechat_ticket_http_requests_total", &[("route", "/wechat"), ("status", status)]);
    assert_eq!((statuses("200"), statuses("403")), (48.0, 2.0));
    assert_eq!(after.value("wechat_ticket_http_requests_total", &[("route", "/tickets/:code")]), 1.0);
    assert!(after.value("wechat_ticket_http_requests_total", &[("route", "unmatched")]) >= 3.0);

    // Gauges read at the scrape.
    assert!(after.value("wechat_ticket_db_pool_connections", &[("state", "max")]) >= 1.0);
    assert!(after.has("wechat_ticket_db_pool_waiting"));
    assert!(after.has("wechat_ticket_notification_queue"));
    assert!(after.has("wechat_ticket_job_queue_depth"));

    // Nothing secret anywhere in the text: no ticket code, openid, path or token.
    let door_token = door.trim_start_matches("/door/");
    for secret in [code.as_str(), scanned.as_str(), &booked[2].1, holder.as_str(), &sold_out[0], TOKEN, door_token] {
        assert!(!text.contains(secret), "{secret} in the scrape");
    }
    let routes: HashSet<String> = after.label_values().into_iter().filter(|v| v.starts_with('/')).collect();
    assert!(routes.contains("/door/:token/scan"), "{routes:?}");

    // Seat choices: two holders choose the same zone of one place.
    let created = crate::seats::create(&app, "zones", &["--seating", "zone", "--zone", "A区:1", "--zone", "B区:1"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let zoned: i64 = app.count("SELECT id FROM activities WHERE key = 'zones'").await;
    let mut chooser_forms = Vec::new();
    for openid in &sold_out[3..5] {
        let Reply::News { url, .. } = served.say(&wx::click(openid, &format!("BOOK_{zoned}"))).await else {
            panic!("booked")
        };
        let code = ticket_code(&url);
        let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        let query = links::sign(&app.state.secret_key, links::Purpose::Ticket, openid, &code, expires);
        let page = served.http.get(format!("{}/tickets/{code}/seat?{query}", served.base)).send().await.unwrap();
        let fields = hidden_fields(&page.text().await.unwrap(), &format!("/tickets/{code}/seat"));
        chooser_forms.push((code, fields));
    }
    for (code, fields) in &chooser_forms {
        let mut form = fields.clone();
        form.push(("zone".into(), "A区".into()));
        served.http.post(format!("{}/tickets/{code}/seat", served.base)).form(&form).send().await.unwrap();
    }
    let (_, seated) = served.scrape().await;
    let choices = |outcome: &str| seated.value("wechat_ticket_seat_choices_total", &[("outcome", outcome)]);
    assert_eq!((choices("placed"), choices("taken")), (1.0, 1.0));
    assert_eq!(seated.value("wechat_ticket_bookings_total", &[("via", "wechat")]), 12.0);
    terminate(served.server);
}

//! `STUDENT_VERIFY=cas`: the bind link goes through the campus CAS login, and
//! only what CAS proves is bound (issue 15, point 1), against a fake CAS.

use crate::common::{Settings, TestApp, fake_cas::FakeCas, spawn_app_with, wx};

async fn app_with_cas(cas: &FakeCas, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = Settings::default().set("STUDENT_VERIFY", "cas").set("CAS_BASE_URL", &cas.base);
    for (k, v) in extra {
        settings = settings.set(k, v);
    }
    spawn_app_with(settings).await
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers().get("location").expect("a redirect").to_str().unwrap().to_string()
}

/// Opens the bind link and follows it to CAS; returns the callback URL CAS
/// sends the browser back to (with its ticket).
async fn through_cas(app: &TestApp, link: &str) -> String {
    let to_cas = app.http.get(link).send().await.unwrap();
    assert_eq!(to_cas.status(), 303, "the bind page sends the student to CAS");
    let login = location(&to_cas);
    assert!(login.starts_with(&format!("{}/cas/login?service=", login.split("/cas/").next().unwrap())), "{login}");
    let back = app.http.get(&login).send().await.unwrap();
    location(&back)
}

async fn bound(app: &TestApp, openid: &str) -> Option<String> {
    sqlx::query_scalar("SELECT student_id FROM students WHERE openid = $1 AND student_id IS NOT NULL")
        .bind(openid)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_cas_login_binds_the_student_id_it_proves_once() {
    let cas = FakeCas::start().await;
    let app = app_with_cas(&cas, &[]).await;
    cas.login_as("2024010001", &[]);
    let link = app.say(&wx::text("oCas", "绑定")).await.links()[0].clone();
    let callback = through_cas(&app, &link).await;
    assert!(callback.starts_with(&app.url("/bind/cas?")) && callback.contains("ticket=ST-"), "{callback}");

    let page = app.http.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("绑定成功") && page.contains("2024010001"), "{page}");
    assert_eq!(bound(&app, "oCas").await.as_deref(), Some("2024010001"));
    assert_eq!(cas.validations(), ["/p3/serviceValidate"]);
    let again = app.say(&wx::text("oCas", "绑定")).await;
    assert!(again.text().contains("已绑定学号 2024010001"), "{again:?}");
}

#[tokio::test]
async fn a_typed_student_id_is_refused_in_cas_mode() {
    let cas = FakeCas::start().await;
    let app = app_with_cas(&cas, &[]).await;
    let link = app.say(&wx::text("oTyper", "绑定")).await.links()[0].clone();
    let (status, page) = app.submit_bind(&link, "2024010001", "").await;
    assert_eq!(status, 403);
    assert!(page.contains("统一身份认证"), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM students WHERE student_id IS NOT NULL").await, 0);
}

#[tokio::test]
async fn a_failed_validation_binds_nothing_and_says_why() {
    let cas = FakeCas::start().await;
    let app = app_with_cas(&cas, &[]).await;
    cas.login_as("2024010001", &[]);
    let link = app.say(&wx::text("oFail", "绑定")).await.links()[0].clone();
    let callback = through_cas(&app, &link).await;
    // A ticket CAS never issued.
    let forged = format!("{}ticket=ST-999-forged", callback.split("ticket=").next().unwrap());
    let page = app.http.get(&forged).send().await.unwrap();
    assert_eq!(page.status(), 403);
    let page = page.text().await.unwrap();
    assert!(page.contains("身份认证没有通过") && page.contains("INVALID_TICKET"), "{page}");
    assert_eq!(bound(&app, "oFail").await, None);

    // A CAS account that is not a student ID (staff login) binds nothing either.
    cas.login_as("teacher.wang", &[]);
    let callback = through_cas(&app, &link).await;
    let page = app.http.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("没有可用的学号"));
    assert_eq!(bound(&app, "oFail").await, None);
}

#[tokio::test]
async fn attribute_mode_takes_the_named_attribute_and_cas2_is_a_fallback() {
    let cas = FakeCas::start().await;
    cas.cas2();
    let app = app_with_cas(&cas, &[("CAS_STUDENT_ID_ATTRIBUTE", "studentNo")]).await;
    // The login name is not the student ID; the attribute is.
    cas.login_as("zhang3", &[("studentNo", "2024010002"), ("name", "张三")]);
    let link = app.say(&wx::text("oAttr", "绑定")).await.links()[0].clone();
    let callback = through_cas(&app, &link).await;
    let page = app.http.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("2024010002"));
    assert_eq!(bound(&app, "oAttr").await.as_deref(), Some("2024010002"));
    assert_eq!(cas.validations(), ["/p3/serviceValidate", "/serviceValidate"], "p3 404 → CAS 2.0 path");

    // Without the attribute, nothing is bound.
    cas.login_as("li4", &[]);
    let link = app.say(&wx::text("oNoAttr", "绑定")).await.links()[0].clone();
    let callback = through_cas(&app, &link).await;
    assert_eq!(app.http.get(&callback).send().await.unwrap().status(), 403);
    assert_eq!(bound(&app, "oNoAttr").await, None);
}

#[tokio::test]
async fn a_replayed_ticket_is_refused() {
    let cas = FakeCas::start().await;
    let app = app_with_cas(&cas, &[]).await;
    cas.login_as("2024010003", &[]);
    let link = app.say(&wx::text("oFirst", "绑定")).await.links()[0].clone();
    let callback = through_cas(&app, &link).await;
    assert_eq!(app.http.get(&callback).send().await.unwrap().status(), 200);
    // The student unbinds; the old callback URL (in history) is replayed.
    app.say(&wx::text("oFirst", "解绑")).await;
    let replay = app.http.get(&callback).send().await.unwrap();
    assert_ne!(replay.status(), 200);
    assert_eq!(bound(&app, "oFirst").await, None);

    // The same ticket on another fresh link of the same user: spent.
    let link = app.say(&wx::text("oFirst", "绑定")).await.links()[0].clone();
    let fresh = through_cas(&app, &link).await;
    let ticket = callback.split("ticket=").nth(1).unwrap();
    let replay = format!("{}ticket={ticket}", fresh.split("ticket=").next().unwrap());
    let page = app.http.get(&replay).send().await.unwrap();
    assert_eq!(page.status(), 409);
    assert!(page.text().await.unwrap().contains("已经用过"));
    assert_eq!(bound(&app, "oFirst").await, None);
    assert_eq!(cas.validations().len(), 1, "a spent ticket is not even sent to CAS");
}

#[tokio::test]
async fn a_tampered_service_url_is_refused_without_binding() {
    let cas = FakeCas::start().await;
    let app = app_with_cas(&cas, &[]).await;
    cas.login_as("2024010004", &[]);
    let victim_link = app.say(&wx::text("oAttacker", "绑定")).await.links()[0].clone();
    let callback = through_cas(&app, &victim_link).await;
    // The attacker swaps the openid carried in the callback for their own.
    let other = base64_url("oSomeoneElse");
    let o = callback.split("o=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let tampered = callback.replace(&format!("o={o}"), &format!("o={other}"));
    let page = app.http.get(&tampered).send().await.unwrap();
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("链接无效"));
    assert!(cas.validations().is_empty(), "refused before CAS is asked");

    // A genuine link of another user, with a ticket issued for the first link's service.
    let other_link = app.say(&wx::text("oSomeoneElse", "绑定")).await.links()[0].clone();
    let other_callback = through_cas(&app, &other_link).await;
    let stolen_ticket = callback.split("ticket=").nth(1).unwrap();
    let mixed = format!("{}ticket={stolen_ticket}", other_callback.split("ticket=").next().unwrap());
    let page = app.http.get(&mixed).send().await.unwrap();
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("INVALID_SERVICE"));
    assert_eq!(app.count("SELECT count(*) FROM students WHERE student_id IS NOT NULL").await, 0);
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap()
}

/// The attack of issue 19, point 1: a stranger opens their own bind link,
/// stops at CAS's login page and sends that URL to a student who is signed in
/// to the campus CAS. The victim's browser comes back with a ticket for the
/// victim's student ID — on the stranger's WeChat account. It must bind nothing.
#[tokio::test]
async fn a_cas_login_url_sent_to_another_student_binds_nothing() {
    let cas = FakeCas::start().await;
    let app = app_with_cas(&cas, &[]).await;
    let attacker_link = app.say(&wx::text("oStranger", "绑定")).await.links()[0].clone();
    let to_cas = app.http.get(&attacker_link).send().await.unwrap();
    assert_eq!(to_cas.status(), 303);
    let login_url = location(&to_cas);

    // The victim has even opened a bind link of their own before (their browser holds a bind cookie).
    let victim = browser();
    let own_link = app.say(&wx::text("oVictim", "绑定")).await.links()[0].clone();
    assert_eq!(victim.get(&own_link).send().await.unwrap().status(), 303);
    cas.login_as("2024010007", &[]);
    let back = victim.get(&login_url).send().await.unwrap();
    let callback = location(&back);
    assert!(callback.contains("ticket=ST-"), "{callback}");
    let page = victim.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 403);
    let page = page.text().await.unwrap();
    assert!(page.contains("没有绑定任何学号") && page.contains("同一个页面"), "{page}");
    assert_eq!(bound(&app, "oStranger").await, None, "the stranger got nobody's student ID");
    assert_eq!(bound(&app, "oVictim").await, None);
    assert!(cas.validations().is_empty(), "refused before CAS is asked; the ticket stays unspent");

    // A browser with no cookie at all, and the callback with its `st` removed, fare no better.
    let bare = browser();
    assert_eq!(bare.get(&callback).send().await.unwrap().status(), 403);
    let without_st: String = {
        let (path, query) = callback.split_once('?').unwrap();
        let kept: Vec<&str> = query.split('&').filter(|p| !p.starts_with("st=")).collect();
        format!("{path}?{}", kept.join("&"))
    };
    assert_eq!(app.http.get(&without_st).send().await.unwrap().status(), 403);
    assert_eq!(app.count("SELECT count(*) FROM students WHERE student_id IS NOT NULL").await, 0);

    // The stranger's own browser finishing with its own login still works (it is their own ID).
    cas.login_as("2024010008", &[]);
    let own = location(&app.http.get(&login_url).send().await.unwrap());
    assert_eq!(app.http.get(&own).send().await.unwrap().status(), 200);
    assert_eq!(bound(&app, "oStranger").await.as_deref(), Some("2024010008"));
}

#[tokio::test]
async fn a_cas_answer_naming_two_students_binds_nothing() {
    let cas = FakeCas::start().await;
    let app = app_with_cas(&cas, &[]).await;
    cas.login_as("2024010001", &[]);
    cas.also_user("2024010002");
    let link = app.say(&wx::text("oTwo", "绑定")).await.links()[0].clone();
    let callback = through_cas(&app, &link).await;
    let page = app.http.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 502);
    assert!(page.text().await.unwrap().contains("没有绑定任何学号"));
    assert_eq!(bound(&app, "oTwo").await, None);

    // The student-ID attribute given twice with different values: nothing either.
    let app = app_with_cas(&cas, &[("CAS_STUDENT_ID_ATTRIBUTE", "studentNo")]).await;
    cas.login_as("zhang3", &[("studentNo", "2024010001"), ("studentNo", "2024010002")]);
    let link = app.say(&wx::text("oAttrTwice", "绑定")).await.links()[0].clone();
    let callback = through_cas(&app, &link).await;
    let page = app.http.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("不止一个学号"));
    assert_eq!(bound(&app, "oAttrTwice").await, None);

    // The same value twice names one student, who is bound.
    cas.login_as("zhang3", &[("studentNo", "2024010003"), ("studentNo", "2024010003")]);
    let link = app.say(&wx::text("oAttrSame", "绑定")).await.links()[0].clone();
    let callback = through_cas(&app, &link).await;
    assert_eq!(app.http.get(&callback).send().await.unwrap().status(), 200);
    assert_eq!(bound(&app, "oAttrSame").await.as_deref(), Some("2024010003"));
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn housekeeping_forgets_used_tickets_and_codes_after_a_day() {
    let cas = FakeCas::start().await;
    let app = app_with_cas(&cas, &[]).await;
    for sql in [
        "INSERT INTO used_cas_tickets (ticket_hash, used_at) VALUES ('old', now() - interval '2 days'), ('new', now())",
        "INSERT INTO oauth_codes (code_hash, state, openid, exchanged_at) VALUES \
         ('old', 's', 'o', now() - interval '2 days'), ('new', 's', 'o', now())",
    ] {
        sqlx::query(sql).execute(&app.pool).await.unwrap();
    }
    assert_eq!(wechat_ticket::schedule::tidy(&app.pool).await.unwrap(), 2);
    assert_eq!(app.count("SELECT count(*) FROM used_cas_tickets WHERE ticket_hash = 'new'").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM oauth_codes").await, 1);
}

//! An organizer of one club in a real browser (headless Chromium, issue 22):
//! logs in, sees only their club's activities (another club's page answers
//! 404, an account-wide page 403), and issues a guest ticket on their
//! activity's page, then opens it as the guest will. Screenshots land in
//! `target/browser-screenshots/organizer-team/`. Skipped without Chromium,
//! unless `CI=true`.

use std::time::Duration;

use wechat_ticket::auth::accounts::{self, Role};

use crate::common::{admin::PASSWORD, browser::Browser, spawn_app};
use crate::teams::{activity_in, team};

const WHOLE_TEST: Duration = Duration::from_secs(90);

#[tokio::test]
async fn an_organizer_sees_only_their_club_and_issues_a_guest_ticket() {
    let Some(browser) = Browser::start("organizer-team").await else { return };
    tokio::time::timeout(WHOLE_TEST, journey(&browser)).await.expect("the browser journey within 90 s");
    browser.close().await;
}

async fn journey(b: &Browser) {
    let app = spawn_app().await;
    let drama = team(&app, "话剧社").await;
    let choir = team(&app, "合唱团").await;
    let ours = activity_in(&app, "hamlet", drama).await;
    let theirs = activity_in(&app, "carols", choir).await;
    accounts::add_with(&mut app.pool.acquire().await.unwrap(), "ophelia", PASSWORD, Some(Role::Organizer), &[drama])
        .await
        .unwrap();

    b.goto(&app.url("/admin")).await;
    b.find("#username").await;
    b.type_into("#username", "ophelia").await;
    b.type_into("#password", PASSWORD).await;
    b.click_and_wait(r#"form[action="/admin/login"] button[type=submit]"#).await;
    assert_eq!(b.path().await, "/admin");
    let list = b.text("main").await;
    assert!(list.contains("hamlet") && !list.contains("carols"), "only the club's own activity: {list}");
    let nav = b.text("body").await;
    assert!(!nav.contains("账号"), "no accounts link for an organizer");
    b.shot("own-activities").await;
    b.policy_kept("activity list").await;

    // Another club's activity is as missing as one that does not exist; an account-wide page is refused.
    assert_eq!(b.fetch_status(&format!("/admin/activities/{}", theirs.id)).await, 404);
    assert_eq!(b.fetch_status("/admin/activities/999999").await, 404);
    assert_eq!(b.fetch_status("/admin/menu").await, 403);

    // A guest ticket for the photographer, from the activity's page.
    b.goto(&app.url(&format!("/admin/activities/{}", ours.id))).await;
    b.type_into("#guest-name", "王老师").await;
    b.type_into("#guest-note", "摄影").await;
    b.click_and_wait("#guest-issue button[type=submit]").await;
    assert_eq!(b.text("#guest-count").await.trim(), "1");
    let listed = b.text("#guest-tickets").await;
    assert!(listed.contains("王老师") && listed.contains("ophelia"), "{listed}");
    b.shot("guest-issued").await;
    b.policy_kept("activity page").await;

    // The link to forward: the guest's ticket page, with their name and a QR code.
    b.click_and_wait("#guest-tickets a[href^='/tickets/']").await;
    let ticket = b.text("main").await;
    assert!(ticket.contains("王老师") && !ticket.contains("guest:"), "{ticket}");
    b.find(".qr svg").await;
    b.shot("guest-ticket").await;
    b.policy_kept("guest ticket").await;

    let issued: (String, String) =
        sqlx::query_as("SELECT guest_name, issued_by FROM tickets WHERE activity_id = $1 AND guest_name IS NOT NULL")
            .bind(ours.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(issued, ("王老师".to_string(), "ophelia".to_string()));
}

//! The activity page shows the door: arrivals per five minutes as a chart
//! drawn on the server, and who came of those who booked.

use time::{Duration, OffsetDateTime};
use wechat_ticket::local_time;

use crate::common::{fixtures::Window, spawn_app, wx};

/// The bars of the page's chart: (data-at, data-count) in order.
fn bars(page: &str) -> Vec<(String, i64)> {
    page.split("<g class=\"bar\" ")
        .skip(1)
        .map(|bar| {
            let attr = |name: &str| bar.split(&format!("{name}=\"")).nth(1).unwrap().split('"').next().unwrap();
            (attr("data-at").to_string(), attr("data-count").parse().unwrap())
        })
        .collect()
}

fn strong(page: &str, id: &str) -> Option<String> {
    let marker = format!("<strong id=\"{id}\">");
    Some(page.split(&marker).nth(1)?.split('<').next()?.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_activity_page_charts_arrivals_and_counts_no_shows_after_the_end() {
    let app = spawn_app().await;
    app.login_admin("organiser").await;
    let show = app.activity("show", 20, Window::Open).await;
    let students = app.bound_students(40, 7).await;
    for openid in &students {
        app.say(&wx::click(openid, &format!("BOOK_{}", show.id))).await;
    }
    app.say(&wx::text(&students[6], "退票 show")).await;
    let path = format!("/admin/activities/{}", show.id);

    let page = app.get(&path).await.text().await.unwrap();
    assert!(page.contains("还没有人检票") && bars(&page).is_empty(), "{page}");

    // Five arrive at chosen times: two in one five minutes, none in the next, three in the one after.
    let base = OffsetDateTime::from_unix_timestamp({
        let t = (show.start_at - Duration::minutes(30)).unix_timestamp();
        t - t.rem_euclid(300)
    })
    .unwrap();
    let arrivals = [
        Duration::seconds(60),
        Duration::seconds(299),
        Duration::seconds(600),
        Duration::seconds(750),
        Duration::seconds(899),
    ];
    for (i, after) in arrivals.iter().enumerate() {
        // Three at the east gate, two by an admin from before gates were recorded.
        let gate = if i < 3 { Some("东门") } else { None };
        sqlx::query("UPDATE tickets SET status = 'used', checked_in_at = $1, checked_in_by = $3 WHERE student_id = $2")
            .bind(base + *after)
            .bind(format!("{:05}{i:05}", 40))
            .bind(gate)
            .execute(&app.pool)
            .await
            .unwrap();
    }

    let page = app.get(&path).await.text().await.unwrap();
    let tz = app.state.config.timezone;
    let at = |minutes: i64| local_time::clock(base + Duration::minutes(minutes), tz);
    assert_eq!(bars(&page), [(at(0), 2), (at(5), 0), (at(10), 3)], "{page}");
    assert!(page.contains(&format!("<title>{}–{}：3 人</title>", at(10), at(15))), "{page}");
    assert!(page.contains(&format!(">{}</text>", at(0))), "the time axis is labelled");
    assert!(!page.contains("style="), "the CSP allows no inline style");
    assert_eq!(strong(&page, "door-checked-in").as_deref(), Some("5"));
    assert_eq!(strong(&page, "door-booked").as_deref(), Some("6"), "the cancelled ticket is not booked");
    assert_eq!(strong(&page, "door-no-shows"), None, "no one is a no-show before the end");
    let gates = &page[page.find("id=\"door-gates\"").expect("the gates' counts")..];
    assert!(gates.contains("<td>东门</td><td>3</td>") && gates.contains("<td>管理员</td><td>2</td>"), "{gates}");

    // The activity is over: one booked and did not come (the cancelled one is not a no-show).
    sqlx::query(
        "UPDATE activities SET book_start = book_start - interval '10 hours', book_end = book_end - interval '10 hours', \
         start_at = start_at - interval '10 hours', end_at = end_at - interval '10 hours' WHERE id = $1",
    )
    .bind(show.id)
    .execute(&app.pool)
    .await
    .unwrap();
    let page = app.get(&path).await.text().await.unwrap();
    assert_eq!(strong(&page, "door-no-shows").as_deref(), Some("1"), "{page}");
    assert!(page.contains("未到场"));
    assert_eq!(bars(&page).len(), 3);
}

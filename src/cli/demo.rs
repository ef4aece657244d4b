//! `serve --demo`: sample activities and an admin, so a first run has something to click.

use rand::Rng;
use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};

use crate::{
    auth::accounts,
    booking::{NewActivity, activities},
    error::AppError,
    local_time,
};

/// Seeds what is missing: an `admin` account when there is none (its password
/// is printed once), and three activities when there are none.
pub async fn seed(conn: &mut PgConnection, tz: &time_tz::Tz) -> Result<(), AppError> {
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM admin_users").fetch_one(&mut *conn).await?;
    if admins == 0 {
        let password: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(16).map(char::from).collect();
        accounts::add(conn, "admin", &password).await?;
        println!("demo admin: username `admin`, password `{password}` (shown once)");
    }
    if !activities::all(conn).await?.is_empty() {
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let (h, d) = (Duration::hours(1), Duration::days(1));
    // Activities at 19:00 local time, a few days out, as real ones would be.
    let evening = |days: i32| {
        let day = local_time::full(now + days * d, tz);
        local_time::parse(&format!("{} 19:00", &day[..10]), tz).unwrap_or(now + days * d)
    };
    for (key, name, place, capacity, book_start, start_at) in [
        ("concert", "新年音乐会", "新清华学堂", 300, now - h, evening(3)),
        ("lecture", "人工智能前沿讲座", "主楼后厅", 120, now + d, evening(5)),
        ("film", "露天电影之夜", "紫荆操场", 500, now - 2 * h, evening(2)),
    ] {
        let new = NewActivity {
            key: key.into(),
            name: name.into(),
            place: place.into(),
            description: "这是 --demo 生成的示例活动。".into(),
            book_start,
            book_end: start_at - d,
            start_at,
            end_at: start_at + 2 * h,
            capacity,
            publish: true,
        };
        activities::create(conn, &new).await?;
    }
    println!("demo: created activities concert, lecture, film");
    Ok(())
}

//! Things a test needs to exist before it starts: activities in each booking
//! state, bound students.

use time::{Duration, OffsetDateTime};
use wechat_ticket::booking::{Activity, NewActivity, activities};

use super::{TestApp, wx};

/// When an activity's booking window is, relative to now.
#[derive(Clone, Copy)]
pub enum Window {
    Open,
    NotYetOpen,
    Closed,
}

impl TestApp {
    /// A database beside the test's own, migrated up to just before migration
    /// `before` (e.g. `"0017"`): a deployment from before that change, to put
    /// data into and then migrate the rest of the way.
    pub async fn database_migrated_before(&self, before: &str) -> sqlx::PgPool {
        use sqlx::{ConnectOptions, Connection};
        let name = format!("{}_before_{before}", self.db.get_database().unwrap());
        let mut server = self.db.connect().await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut server).await.unwrap();
        server.close().await.unwrap();
        let old = std::env::temp_dir().join(format!("{name}_migrations"));
        std::fs::create_dir_all(&old).unwrap();
        let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for entry in std::fs::read_dir(&all).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            if file.as_str() < before {
                std::fs::copy(&path, old.join(&file)).unwrap();
            }
        }
        let pool = sqlx::PgPool::connect_with(self.db.clone().database(&name)).await.unwrap();
        sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&pool).await.unwrap();
        std::fs::remove_dir_all(&old).unwrap();
        pool
    }

    pub async fn activity(&self, key: &str, capacity: i32, window: Window) -> Activity {
        let now = OffsetDateTime::now_utc();
        let h = Duration::hours(1);
        let (book_start, book_end, start_at) = match window {
            Window::Open => (now - h, now + h, now + 2 * h),
            Window::NotYetOpen => (now + h, now + 2 * h, now + 3 * h),
            Window::Closed => (now - 3 * h, now - h, now + h),
        };
        let new = NewActivity {
            key: key.into(),
            name: format!("活动 {key}"),
            place: "新清华学堂".into(),
            description: "一场测试活动".into(),
            book_start,
            book_end,
            start_at,
            end_at: start_at + 2 * h,
            capacity,
            publish: true,
            mode: Default::default(),
        };
        activities::create(&mut self.pool.acquire().await.unwrap(), &new).await.unwrap()
    }

    /// Binds a student the way a student does: `绑定` → open the link → submit the form.
    pub async fn bind(&self, openid: &str, student_id: &str) {
        let reply = self.say(&wx::text(openid, "绑定")).await;
        let link = reply.links().into_iter().next().expect("a bind link");
        let page = self.http.get(&link).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let resp = self.submit_bind(&link, student_id, "").await;
        assert_eq!(resp.0, 200, "{}", resp.1);
        assert!(resp.1.contains("绑定成功"), "{}", resp.1);
    }

    /// Posts the bind form that the page at `link` shows; returns (status, page).
    pub async fn submit_bind(&self, link: &str, student_id: &str, name: &str) -> (u16, String) {
        let query = link.split_once('?').expect("a signed link").1;
        let mut form: Vec<(String, String)> =
            url_pairs(query).into_iter().filter(|(k, _)| ["o", "e", "s", "n"].contains(&k.as_str())).collect();
        form.push(("student_id".into(), student_id.into()));
        form.push(("name".into(), name.into()));
        let resp = self.http.post(self.url("/bind")).form(&form).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Many bound students at once, written directly (for rush tests, where
    /// binding is not what is being tested).
    /// Student IDs are `{group:05}{i:05}`; openids `o{group}_{i}`.
    pub async fn bound_students(&self, group: u32, n: usize) -> Vec<String> {
        let openids: Vec<String> = (0..n).map(|i| format!("o{group}_{i}")).collect();
        let ids: Vec<String> = (0..n).map(|i| format!("{group:05}{i:05}")).collect();
        sqlx::query(
            "INSERT INTO students (openid, student_id, bound_at) SELECT * , now() FROM unnest($1::text[], $2::text[])",
        )
        .bind(&openids)
        .bind(&ids)
        .execute(&self.pool)
        .await
        .unwrap();
        openids
    }

    /// Booking (a lottery's registration) ends now: a draw or a waiting list's close is due.
    pub async fn close_booking(&self, activity_id: i64) {
        sqlx::query("UPDATE activities SET book_end = now() WHERE id = $1")
            .bind(activity_id)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Runs the real binary's command against this test's database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_wechat-ticket"))
            .env("DATABASE_URL", self.database_url())
            .env("PUBLIC_URL", &self.base)
            .env_remove("SECRET_KEY")
            .args(args)
            .output()
            .unwrap()
    }

    pub async fn live_tickets(&self, activity_id: i64) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE activity_id = $1 AND status <> 'cancelled'")
            .bind(activity_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// The pairs of a query string (signed links carry only URL-safe characters).
pub fn url_pairs(query: &str) -> Vec<(String, String)> {
    query.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The ticket code in a ticket page URL (signed links carry a query after it).
pub fn ticket_code(url: &str) -> String {
    let after = url.rsplit("/tickets/").next().unwrap_or_default();
    after.split(['?', '#', '/']).next().unwrap_or_default().to_string()
}

/// A page's form submitted as the browser would: every hidden input of the
/// form whose action is `action`.
pub fn hidden_fields(page: &str, action: &str) -> Vec<(String, String)> {
    let Some(start) = page.find(&format!("action=\"{action}\"")) else { return Vec::new() };
    let form = &page[start..page[start..].find("</form>").map_or(page.len(), |e| start + e)];
    form.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let value = rest.split_once("value=\"")?.1.split('"').next()?;
            Some((name.to_string(), value.replace("&#61;", "=").replace("&amp;", "&")))
        })
        .collect()
}

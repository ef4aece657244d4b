//! Every table that grows is tidied: what is past its use goes, what is still
//! needed stays.

use crate::common::{fixtures::Window, spawn_app};

#[tokio::test]
async fn tidy_forgets_what_is_spent_and_keeps_what_is_live() {
    let app = spawn_app().await;
    let a = app.activity("kept", 10, Window::Open).await;
    let exec = |sql: &'static str| {
        let pool = app.pool.clone();
        async move { sqlx::query(sql).execute(&pool).await.unwrap() }
    };
    exec("INSERT INTO wechat_messages (dedup_key, reply, created_at) VALUES ('old', 'x', now() - interval '2 days'), ('new', 'x', now())").await;
    exec(
        "INSERT INTO wechat_signed_queries (timestamp, nonce, dedup_key) VALUES \
         (extract(epoch FROM now())::bigint - 3600, 'old', 'k'), (extract(epoch FROM now())::bigint, 'new', 'k')",
    )
    .await;
    exec(
        "INSERT INTO used_bind_links (nonce, expires_at) VALUES ('old', now() - interval '1 hour'), \
         ('new', now() + interval '20 minutes')",
    )
    .await;
    exec(
        "INSERT INTO simulator_messages (openid, kind, body, created_at) VALUES \
         ('simulator-a', 'sent', 'old', now() - interval '31 days'), ('simulator-a', 'sent', 'new', now())",
    )
    .await;
    // Posters: an old one replaced (unused), an old one in use, a fresh upload not used yet.
    exec(
        "INSERT INTO images (id, content_type, bytes, sha256, created_at) VALUES \
         ('00000000-0000-0000-0000-000000000001', 'image/png', 'a', 'x', now() - interval '2 days'), \
         ('00000000-0000-0000-0000-000000000002', 'image/png', 'b', 'x', now() - interval '2 days'), \
         ('00000000-0000-0000-0000-000000000003', 'image/png', 'c', 'x', now())",
    )
    .await;
    sqlx::query("UPDATE activities SET poster_id = '00000000-0000-0000-0000-000000000002' WHERE id = $1")
        .bind(a.id)
        .execute(&app.pool)
        .await
        .unwrap();

    exec(
        "INSERT INTO checkin_scans (scanner, nonce, activity_id, scanned_at) \
         SELECT 'admin:a', 'old-nonce-0123456789', id, now() - interval '31 days' FROM activities UNION ALL \
         SELECT 'admin:a', 'new-nonce-0123456789', id, now() FROM activities",
    )
    .await;

    let forgotten = wechat_ticket::schedule::tidy(&app.pool).await.unwrap();
    assert_eq!(forgotten, 6);
    for (table, column, kept) in [
        ("wechat_messages", "dedup_key", "new"),
        ("wechat_signed_queries", "nonce", "new"),
        ("used_bind_links", "nonce", "new"),
        ("simulator_messages", "body", "new"),
        ("checkin_scans", "nonce", "new-nonce-0123456789"),
    ] {
        let left: Vec<String> =
            sqlx::query_scalar(&format!("SELECT {column} FROM {table}")).fetch_all(&app.pool).await.unwrap();
        assert_eq!(left, [kept], "{table}");
    }
    let images: Vec<String> =
        sqlx::query_scalar("SELECT id::text FROM images ORDER BY id").fetch_all(&app.pool).await.unwrap();
    assert_eq!(images, ["00000000-0000-0000-0000-000000000002", "00000000-0000-0000-0000-000000000003"]);
    // The poster still shows.
    assert_eq!(app.get("/images/00000000-0000-0000-0000-000000000002").await.status(), 200);
    assert_eq!(wechat_ticket::schedule::tidy(&app.pool).await.unwrap(), 0, "idempotent");
}

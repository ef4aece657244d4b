//! An admin in a browser: log in, read the CSRF token off a page, submit forms.

use wechat_ticket::auth::accounts;

use super::TestApp;

pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    pub async fn add_admin(&self, username: &str) {
        accounts::add(&mut self.pool.acquire().await.unwrap(), username, PASSWORD).await.unwrap();
    }

    /// Logs in through the form; returns the session's CSRF token.
    pub async fn login_admin(&self, username: &str) -> String {
        self.add_admin(username).await;
        let resp = self
            .http
            .post(self.url("/admin/login"))
            .form(&[("username", username), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "login");
        self.csrf_token().await
    }

    pub async fn csrf_token(&self) -> String {
        let page = self.get("/admin").await.text().await.unwrap();
        csrf_in(&page).expect("a CSRF token on the admin page")
    }

    /// POSTs a form as the logged-in admin; returns (status, body).
    pub async fn admin_post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let resp = self.http.post(self.url(path)).form(form).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

pub fn csrf_in(page: &str) -> Option<String> {
    let start = page.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(page[start..].split('"').next()?.to_string())
}

/// The (HTML-unescaped) value of a hidden input.
pub fn hidden_value(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let raw = page[start..].split('"').next()?;
    Some(
        raw.replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

//! The campus CAS login (统一身份认证), CAS protocol 3.0 with a 2.0 fallback:
//! `/login?service=…` sends the student to sign in, and the service ticket it
//! returns is validated here, server to server, at `/p3/serviceValidate`
//! (`/serviceValidate` when the server is CAS 2.0 and answers 404).
//!
//! The answer is parsed as the WeChat bodies are: quick-xml, a size limit, a
//! DOCTYPE refused on sight, and no entity but the predefined ones.

use quick_xml::{Reader, escape::resolve_predefined_entity, events::Event};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::error::AppError;

/// A CAS answer is a few hundred bytes; anything past this is not one.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What CAS said about a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// `<cas:user>` and the `<cas:attributes>` children, by local name.
    Success { user: String, attributes: Vec<(String, String)> },
    /// `<cas:authenticationFailure code="…">why</cas:authenticationFailure>`.
    Failure { code: String, message: String },
}

/// Why a ticket could not be checked at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CasError {
    #[error("CAS server unreachable: {0}")]
    Unreachable(String),
    #[error("CAS answered HTTP {0}")]
    Status(u16),
    #[error("CAS answer is not a CAS response: {0}")]
    Malformed(String),
}

/// Where the student signs in; CAS sends them back to `service` with `ticket=`.
pub fn login_url(base: &str, service: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("service", service).finish();
    format!("{base}/login?{query}")
}

/// Asks CAS whether `ticket` was issued for `service`.
pub async fn validate(base: &str, service: &str, ticket: &str) -> Result<Validation, CasError> {
    let http = super::http().map_err(|e| CasError::Unreachable(e.to_string()))?;
    for path in ["/p3/serviceValidate", "/serviceValidate"] {
        let response = http
            .get(format!("{base}{path}"))
            .query(&[("service", service), ("ticket", ticket)])
            .send()
            .await
            .map_err(|e| CasError::Unreachable(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        // A CAS 2.0 server has no /p3: try the 2.0 path once.
        if status == 404 && path.starts_with("/p3") {
            continue;
        }
        if status != 200 {
            return Err(CasError::Status(status));
        }
        if response.content_length().is_some_and(|n| n as usize > MAX_RESPONSE_BYTES) {
            return Err(CasError::Malformed("too large".into()));
        }
        let body = read_limited(response).await?;
        return parse(&body);
    }
    Err(CasError::Status(404))
}

async fn read_limited(mut response: reqwest::Response) -> Result<String, CasError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| CasError::Unreachable(e.without_url().to_string()))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(CasError::Malformed("too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| CasError::Malformed("not UTF-8".into()))
}

/// Reads a `<cas:serviceResponse>`. Prefixes are ignored (servers differ in
/// what they bind `cas:` to); structure is not: the user and attributes count
/// only where the protocol puts them.
pub fn parse(xml: &str) -> Result<Validation, CasError> {
    let bad = |why: &str| CasError::Malformed(why.to_string());
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut user = None;
    let mut attributes = Vec::new();
    let mut failure: Option<(String, String)> = None;
    let mut seen_root = false;
    loop {
        match reader.read_event().map_err(|e| CasError::Malformed(e.to_string()))? {
            Event::DocType(_) => return Err(bad("DOCTYPE refused")),
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_string();
                if path.is_empty() {
                    if seen_root || name != "serviceResponse" {
                        return Err(bad("root element is not <cas:serviceResponse>"));
                    }
                    seen_root = true;
                }
                if path.len() == 1 && name == "authenticationFailure" {
                    let code = e
                        .try_get_attribute("code")
                        .ok()
                        .flatten()
                        .and_then(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok().map(|v| v.into_owned())
                        })
                        .unwrap_or_default();
                    failure = Some((code, String::new()));
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(e) if path.is_empty() => {
                let _ = e;
                return Err(bad("empty response"));
            }
            Event::Text(t) => text.push_str(&t),
            Event::CData(t) => text.push_str(&t),
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten()
                } else {
                    resolve_predefined_entity(&r).and_then(|s| s.chars().next())
                };
                text.push(resolved.ok_or_else(|| bad("undefined entity"))?);
            }
            Event::End(_) => {
                let name = path.pop().ok_or_else(|| bad("unmatched end tag"))?;
                let parent: Vec<&str> = path.iter().map(String::as_str).collect();
                let value = text.trim().to_string();
                match parent.as_slice() {
                    // Two users in one answer name nobody: refuse rather than pick one.
                    ["serviceResponse", "authenticationSuccess"] if name == "user" && user.is_some() => {
                        return Err(bad("more than one <cas:user>"));
                    }
                    ["serviceResponse", "authenticationSuccess"] if name == "user" => user = Some(value),
                    ["serviceResponse", "authenticationSuccess", "attributes"] => attributes.push((name, value)),
                    ["serviceResponse"] if name == "authenticationFailure" => {
                        if let Some((_, message)) = &mut failure {
                            *message = value;
                        }
                    }
                    _ => {}
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root || !path.is_empty() {
        return Err(bad("truncated document"));
    }
    match (failure, user) {
        (Some((code, message)), _) => Ok(Validation::Failure { code, message }),
        (None, Some(user)) if !user.is_empty() => Ok(Validation::Success { user, attributes }),
        _ => Err(bad("neither authenticationSuccess with a user nor authenticationFailure")),
    }
}

/// Records a ticket as used; false when it was used before. A ticket is spent
/// by its first validation attempt, whatever CAS answers.
pub async fn use_ticket(conn: &mut PgConnection, ticket: &str) -> Result<bool, AppError> {
    let hash = hex::encode(Sha256::digest(ticket.as_bytes()));
    let done = sqlx::query("INSERT INTO used_cas_tickets (ticket_hash) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_with_user_and_attributes() {
        let xml = r#"<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas">
  <cas:authenticationSuccess><cas:user>zhang3</cas:user>
    <cas:attributes><cas:studentNo>2024010001</cas:studentNo><cas:name>张&amp;三</cas:name></cas:attributes>
  </cas:authenticationSuccess></cas:serviceResponse>"#;
        let Validation::Success { user, attributes } = parse(xml).unwrap() else { panic!() };
        assert_eq!(user, "zhang3");
        assert_eq!(attributes, [("studentNo".into(), "2024010001".into()), ("name".into(), "张&三".into())]);
    }

    #[test]
    fn failure_keeps_the_code_and_reason() {
        let xml = r#"<cas:serviceResponse xmlns:cas="http://www.yale.edu/tp/cas">
 <cas:authenticationFailure code="INVALID_TICKET">Ticket ST-1 not recognized</cas:authenticationFailure>
</cas:serviceResponse>"#;
        assert_eq!(
            parse(xml).unwrap(),
            Validation::Failure { code: "INVALID_TICKET".into(), message: "Ticket ST-1 not recognized".into() }
        );
    }

    #[test]
    fn hostile_or_wrong_documents_are_refused() {
        let dtd = r#"<!DOCTYPE x [<!ENTITY e "2024010001">]><cas:serviceResponse xmlns:cas="c">
<cas:authenticationSuccess><cas:user>&e;</cas:user></cas:authenticationSuccess></cas:serviceResponse>"#;
        let undefined = r#"<cas:serviceResponse xmlns:cas="c"><cas:authenticationSuccess>
<cas:user>&e;</cas:user></cas:authenticationSuccess></cas:serviceResponse>"#;
        // A user outside authenticationSuccess proves nothing.
        let misplaced = r#"<cas:serviceResponse xmlns:cas="c"><cas:user>2024010001</cas:user></cas:serviceResponse>"#;
        let other_root =
            r#"<html><cas:authenticationSuccess><cas:user>x</cas:user></cas:authenticationSuccess></html>"#;
        let truncated = r#"<cas:serviceResponse xmlns:cas="c"><cas:authenticationSuccess><cas:user>x</cas:user>"#;
        for xml in [dtd, undefined, misplaced, other_root, truncated, "", "not xml"] {
            assert!(parse(xml).is_err(), "{xml}");
        }
    }

    #[test]
    fn two_users_in_one_answer_are_refused() {
        let xml = r#"<cas:serviceResponse xmlns:cas="c"><cas:authenticationSuccess>
<cas:user>2024010001</cas:user><cas:user>2024010002</cas:user></cas:authenticationSuccess></cas:serviceResponse>"#;
        assert_eq!(parse(xml), Err(CasError::Malformed("more than one <cas:user>".into())));
    }

    #[test]
    fn the_login_url_carries_the_service_encoded() {
        let url = login_url("https://cas.example.edu/cas", "https://t.example/bind/cas?o=a&e=1");
        assert_eq!(
            url,
            "https://cas.example.edu/cas/login?service=https%3A%2F%2Ft.example%2Fbind%2Fcas%3Fo%3Da%26e%3D1"
        );
    }
}

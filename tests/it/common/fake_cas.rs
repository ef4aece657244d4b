//! A fake campus CAS server on 127.0.0.1: `/login` "signs in" whoever the
//! test says and sends the browser back to the service with a fresh ticket;
//! `/p3/serviceValidate` (or `/serviceValidate`, as a CAS 2.0 server) answers
//! as CAS does — once per ticket, and only for the service it was issued to.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use tokio::net::TcpListener;

/// Who a ticket was issued to: (service, user, attributes).
type Issued = (String, Vec<String>, Vec<(String, String)>);

#[derive(Default)]
struct Fake {
    user: String,
    /// Further `<cas:user>` elements in the same answer (a broken or hostile CAS).
    more_users: Vec<String>,
    attributes: Vec<(String, String)>,
    /// ticket → (service, user, attributes), until validated once.
    tickets: HashMap<String, Issued>,
    issued: u32,
    /// A CAS 2.0 server: no `/p3`.
    cas2: bool,
    validations: Vec<String>,
}

#[derive(Clone)]
pub struct FakeCas {
    pub base: String,
    fake: Arc<Mutex<Fake>>,
}

impl FakeCas {
    pub async fn start() -> FakeCas {
        let fake = Arc::new(Mutex::new(Fake::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/cas", listener.local_addr().unwrap());
        let router = Router::new()
            .route("/cas/login", get(login))
            .route("/cas/p3/serviceValidate", get(validate_p3))
            .route("/cas/serviceValidate", get(validate))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeCas { base, fake }
    }

    /// The next logins are this user, with these attributes.
    pub fn login_as(&self, user: &str, attributes: &[(&str, &str)]) {
        let mut f = self.fake.lock().unwrap();
        f.user = user.into();
        f.more_users.clear();
        f.attributes = attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// The next answers name a second user after the first (call after `login_as`).
    pub fn also_user(&self, user: &str) {
        self.fake.lock().unwrap().more_users.push(user.into());
    }

    /// Behave as a CAS 2.0 server: `/p3/serviceValidate` is a 404.
    pub fn cas2(&self) {
        self.fake.lock().unwrap().cas2 = true;
    }

    /// The paths validation requests came to, in order.
    pub fn validations(&self) -> Vec<String> {
        self.fake.lock().unwrap().validations.clone()
    }
}

async fn login(State(fake): State<Arc<Mutex<Fake>>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(service) = q.get("service") else { return (StatusCode::BAD_REQUEST, "no service").into_response() };
    let mut f = fake.lock().unwrap();
    f.issued += 1;
    let ticket = format!("ST-{}-fakecas", f.issued);
    let users = std::iter::once(f.user.clone()).chain(f.more_users.iter().cloned()).collect();
    let entry = (service.clone(), users, f.attributes.clone());
    f.tickets.insert(ticket.clone(), entry);
    let sep = if service.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{service}{sep}ticket={ticket}")).into_response()
}

async fn validate_p3(fake: State<Arc<Mutex<Fake>>>, q: Query<HashMap<String, String>>) -> Response {
    if fake.lock().unwrap().cas2 {
        fake.lock().unwrap().validations.push("/p3/serviceValidate".into());
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    answer(fake, q, "/p3/serviceValidate")
}

async fn validate(fake: State<Arc<Mutex<Fake>>>, q: Query<HashMap<String, String>>) -> Response {
    answer(fake, q, "/serviceValidate")
}

fn failure(code: &str, why: &str) -> Response {
    xml(format!("<cas:authenticationFailure code=\"{code}\">{why}</cas:authenticationFailure>"))
}

fn xml(inner: String) -> Response {
    let body =
        format!("<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">\n{inner}\n</cas:serviceResponse>");
    ([("content-type", "application/xml;charset=UTF-8")], body).into_response()
}

fn answer(State(fake): State<Arc<Mutex<Fake>>>, Query(q): Query<HashMap<String, String>>, path: &str) -> Response {
    let mut f = fake.lock().unwrap();
    f.validations.push(path.into());
    let ticket = q.get("ticket").cloned().unwrap_or_default();
    let service = q.get("service").cloned().unwrap_or_default();
    // A ticket validates once, whatever the answer.
    let Some((issued_for, users, attributes)) = f.tickets.remove(&ticket) else {
        return failure("INVALID_TICKET", &format!("Ticket {ticket} not recognized"));
    };
    if issued_for != service {
        return failure("INVALID_SERVICE", "Ticket was not issued for this service");
    }
    let attributes: String =
        attributes.iter().map(|(k, v)| format!("<cas:{k}>{v}</cas:{k}>")).collect::<Vec<_>>().join("");
    let users: String = users.iter().map(|u| format!("<cas:user>{u}</cas:user>")).collect();
    xml(format!(
        "<cas:authenticationSuccess>{users}<cas:attributes>{attributes}</cas:attributes></cas:authenticationSuccess>"
    ))
}

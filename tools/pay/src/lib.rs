//! `pay` (side-effecting, reconciling): charges a payment API once per
//! idempotency key, and tells the host whether a charge in doubt happened.
//!
//! The API is Stripe-shaped (the test suite's loopback server is the
//! reference: `tests/all/support/payments.rs`):
//!
//! - `POST {api}/v1/charges`, body `{"amount", "currency", "reference"}`,
//!   answers `200 {"id", "amount", "currency", "reference", "status"}`. The
//!   same `Idempotency-Key` with the same body replays the first answer;
//!   with another body it is `422`.
//! - `GET {api}/v1/charges?idempotency_key=V` answers `200 {"data": [...]}`
//!   with zero or one charge.
//!
//! The key is the host's: for a side-effecting tool it adds
//! `Idempotency-Key` to every mutating request, derived from the call's key
//! and the endpoint, the same on every attempt. So `call` may send the POST
//! again when a connection broke after sending (the API dedups it) within
//! its deadline, and `reconcile` looks the charge up by the very value the
//! host sent ([`Context::forwarded_key`]). The policy's
//! `idempotency_header` must stay on (`"Idempotency-Key"`) for `pay`.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use toolhost_sdk::http::{self, HttpError, Request, Response};
use toolhost_sdk::{Context, Deserialize, JsonSchema, Reconciliation, Serialize, ToolError};

/// Sends after a broken connection, within the deadline, at most.
pub const MAX_SENDS: u32 = 4;

#[derive(Deserialize, JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The API's base URL, such as `https://api.example.com`.
    pub api: String,
    /// In the currency's smallest unit (cents).
    pub amount: u64,
    /// ISO 4217, lower case (`usd`).
    pub currency: String,
    /// The caller's reference for the charge (an order id).
    pub reference: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, PartialEq, Eq)]
pub struct Output {
    pub charge_id: String,
    pub amount: u64,
    pub currency: String,
    pub status: String,
}

/// One charge as the API answers it.
#[derive(Deserialize)]
struct Charge {
    id: String,
    amount: u64,
    currency: String,
    status: String,
}

impl From<Charge> for Output {
    fn from(c: Charge) -> Self {
        Output {
            charge_id: c.id,
            amount: c.amount,
            currency: c.currency,
            status: c.status,
        }
    }
}

#[derive(Deserialize)]
struct List {
    data: Vec<Charge>,
}

/// Sends one request; the WASI build uses `wasi:http`, tests a script.
pub trait Transport {
    fn send(&mut self, request: &Request<'_>) -> Result<Response, HttpError>;
}

/// `wasi:http` through the SDK.
pub struct Wasi;

impl Transport for Wasi {
    fn send(&mut self, request: &Request<'_>) -> Result<Response, HttpError> {
        http::send(request)
    }
}

fn charges_url(input: &Input) -> String {
    format!("{}/v1/charges", input.api.trim_end_matches('/'))
}

fn parse<T: DeserializeOwned>(response: &Response, url: &str) -> Result<T, ToolError> {
    serde_json::from_slice(&response.body)
        .map_err(|e| ToolError::Failed(format!("{url}: an answer that is not a charge: {e}")))
}

/// Charges: POST, sent again after a connection that broke once the
/// request may have left, while the deadline allows.
pub fn charge(t: &mut impl Transport, input: &Input, ctx: &Context) -> Result<Output, ToolError> {
    if input.amount == 0 {
        return Err(ToolError::InvalidInput("amount: must be positive".into()));
    }
    let url = charges_url(input);
    let body = serde_json::json!({
        "amount": input.amount,
        "currency": input.currency,
        "reference": input.reference,
    })
    .to_string()
    .into_bytes();
    let request = Request {
        method: "POST",
        url: &url,
        headers: vec![("content-type", "application/json".into())],
        body,
    };
    let deadline = Instant::now() + Duration::from_millis(ctx.deadline_ms);
    let mut sends = 0;
    let response = loop {
        sends += 1;
        match t.send(&request) {
            Ok(response) => break response,
            // The API dedups by the forwarded key: sending again is safe.
            Err(HttpError::Broken(why) | HttpError::NotSent(why))
                if sends < MAX_SENDS && Instant::now() < deadline =>
            {
                let _ = why;
                std::thread::sleep(Duration::from_millis(20 << sends));
            }
            Err(e) => return Err(e.into()),
        }
    };
    match response.status {
        200 | 201 => Ok(parse::<Charge>(&response, &url)?.into()),
        422 => Err(ToolError::Failed(format!(
            "{url}: the API refused the key: it was used with another body ({})",
            response.text()
        ))),
        400..=499 => Err(ToolError::InvalidInput(format!(
            "{url}: the API refused the charge: {} {}",
            response.status,
            response.text()
        ))),
        500..=599 => Err(ToolError::Transient(format!(
            "{url}: the API is failing ({})",
            response.status
        ))),
        other => Err(ToolError::Failed(format!(
            "{url}: unexpected status {other}"
        ))),
    }
}

/// Asks the API whether the charge of this key exists.
pub fn look_up(
    t: &mut impl Transport,
    input: &Input,
    ctx: &Context,
) -> Result<Reconciliation<Output>, ToolError> {
    let url = charges_url(input);
    let Some(sent) = ctx.forwarded_key("POST", &url) else {
        return Err(ToolError::InvalidInput(format!(
            "api: `{}` is not an absolute http(s) URL",
            input.api
        )));
    };
    let query = format!("{url}?idempotency_key={sent}");
    let request = Request {
        method: "GET",
        url: &query,
        headers: vec![],
        body: vec![],
    };
    let response = match t.send(&request) {
        Ok(r) => r,
        Err(e @ HttpError::Denied(_)) => return Err(e.into()),
        Err(e) => return Ok(Reconciliation::Unknown(format!("cannot ask the API: {e}"))),
    };
    if response.status != 200 {
        return Ok(Reconciliation::Unknown(format!(
            "{url}: the API answered the look-up with {}",
            response.status
        )));
    }
    let mut list: List = parse(&response, &url)?;
    Ok(match list.data.len() {
        0 => Reconciliation::NotDone,
        1 => Reconciliation::Committed(list.data.remove(0).into()),
        n => Reconciliation::Unknown(format!("{n} charges carry one key")),
    })
}

pub fn run(input: Input, ctx: &Context) -> Result<Output, ToolError> {
    charge(&mut Wasi, &input, ctx)
}

pub fn reconcile(input: Input, ctx: &Context) -> Result<Reconciliation<Output>, ToolError> {
    look_up(&mut Wasi, &input, ctx)
}

toolhost_sdk::export_tool! {
    name: "pay",
    description: "Charges a payment API once per idempotency key; reconciles a charge in doubt.",
    effect: SideEffecting,
    run: run,
    reconcile: reconcile,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers from a list, in order, and records what was asked.
    struct Script {
        answers: Vec<Result<Response, HttpError>>,
        asked: Vec<(String, String)>,
    }

    impl Transport for Script {
        fn send(&mut self, r: &Request<'_>) -> Result<Response, HttpError> {
            self.asked.push((r.method.to_string(), r.url.to_string()));
            self.answers.remove(0)
        }
    }

    fn ok(body: &str) -> Result<Response, HttpError> {
        Ok(Response {
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        })
    }

    fn input() -> Input {
        Input {
            api: "http://127.0.0.1:9/".into(),
            amount: 500,
            currency: "usd".into(),
            reference: "order-1".into(),
        }
    }

    const CHARGE: &str =
        r#"{"id":"ch_1","amount":500,"currency":"usd","reference":"order-1","status":"succeeded"}"#;

    #[test]
    fn a_broken_connection_is_sent_again_and_a_5xx_is_transient() {
        let mut t = Script {
            answers: vec![Err(HttpError::Broken("cut".into())), ok(CHARGE)],
            asked: vec![],
        };
        let out = charge(&mut t, &input(), &Context::for_tests()).unwrap();
        assert_eq!(out.charge_id, "ch_1");
        assert_eq!(t.asked.len(), 2);
        assert_eq!(t.asked[0].1, "http://127.0.0.1:9/v1/charges");
        let mut t = Script {
            answers: vec![Ok(Response {
                status: 503,
                headers: vec![],
                body: vec![],
            })],
            asked: vec![],
        };
        let err = charge(&mut t, &input(), &Context::for_tests()).unwrap_err();
        assert!(matches!(err, ToolError::Transient(_)), "{err:?}");
    }

    #[test]
    fn a_reused_key_with_another_body_fails() {
        let mut t = Script {
            answers: vec![Ok(Response {
                status: 422,
                headers: vec![],
                body: b"no".to_vec(),
            })],
            asked: vec![],
        };
        let err = charge(&mut t, &input(), &Context::for_tests()).unwrap_err();
        assert!(matches!(err, ToolError::Failed(_)), "{err:?}");
    }

    #[test]
    fn the_look_up_uses_the_forwarded_key_and_reads_zero_or_one_charge() {
        let ctx = Context::for_tests();
        let mut t = Script {
            answers: vec![
                ok(&format!(r#"{{"data":[{CHARGE}]}}"#)),
                ok(r#"{"data":[]}"#),
            ],
            asked: vec![],
        };
        let found = look_up(&mut t, &input(), &ctx).unwrap();
        assert_eq!(
            found,
            Reconciliation::Committed(Output {
                charge_id: "ch_1".into(),
                amount: 500,
                currency: "usd".into(),
                status: "succeeded".into()
            })
        );
        let sent = ctx
            .forwarded_key("POST", "http://127.0.0.1:9/v1/charges")
            .unwrap();
        assert_eq!(
            t.asked[0],
            (
                "GET".to_string(),
                format!("http://127.0.0.1:9/v1/charges?idempotency_key={sent}")
            )
        );
        assert_eq!(
            look_up(&mut t, &input(), &ctx).unwrap(),
            Reconciliation::NotDone
        );
        let mut t = Script {
            answers: vec![Err(HttpError::NotSent("refused".into()))],
            asked: vec![],
        };
        assert!(matches!(
            look_up(&mut t, &input(), &ctx).unwrap(),
            Reconciliation::Unknown(_)
        ));
    }
}

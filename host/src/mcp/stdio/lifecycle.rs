//! What comes before a stdio lifecycle has begun.
//!
//! rmcp's handshake loop (`serve_server_with_ct_inner` in rmcp 3.11) waits
//! for the message that starts a lifecycle: an `initialize`, or (protocol
//! 2026-07-28, which has no handshake) a request whose `_meta` carries a
//! supported protocol version and the client's capabilities. Before it, it
//! answers `ping` and `server/discover`, and answers any other request with
//! an error and waits on; but a notification or a response ends the
//! handshake with an error, and with it the process.
//!
//! [`Lifecycle`] follows the same rule on the messages the transport hands
//! rmcp. Before the lifecycle begins it drops a notification or a response
//! (there is nothing to answer: neither has a request to reply to) with a
//! warning, so a client that sent `notifications/initialized` too early can
//! still initialize; and it remembers each request rmcp will refuse, so the
//! refusal names the fix (send `initialize` first) and is logged.
//!
//! The rule mirrors rmcp's, so it is what rmcp does that decides when a
//! lifecycle begins; the unit tests pin both halves of it.

use std::collections::HashMap;

use rmcp::RoleServer;
use rmcp::model::{ClientRequest, GetMeta, JsonRpcMessage, ProtocolVersion, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};

use crate::mcp::handler::LOG_TARGET;

/// The lifecycle of one stdio client.
#[derive(Debug)]
pub(super) struct Lifecycle {
    /// The versions the server speaks (a 2026-07-28 request starts a
    /// lifecycle only in one of them).
    versions: Vec<ProtocolVersion>,
    begun: bool,
    /// Requests rmcp will refuse before the lifecycle, by id: their method.
    refused: HashMap<RequestId, String>,
}

impl Lifecycle {
    pub(super) fn new(versions: Vec<ProtocolVersion>) -> Lifecycle {
        Lifecycle {
            versions,
            begun: false,
            refused: HashMap::new(),
        }
    }

    /// Whether `message` goes on to rmcp; `false` drops it (logged).
    pub(super) fn admit(&mut self, message: &RxJsonRpcMessage<RoleServer>) -> bool {
        if self.begun {
            return true;
        }
        let request = match message {
            JsonRpcMessage::Request(request) => request,
            JsonRpcMessage::Notification(notification) => {
                let method = serde_json::to_value(&notification.notification)
                    .ok()
                    .and_then(|v| v.get("method").and_then(|m| m.as_str().map(String::from)))
                    .unwrap_or_default();
                tracing::warn!(
                    target: LOG_TARGET,
                    method,
                    "a notification before `initialize`; ignored (send `initialize` first)"
                );
                return false;
            }
            JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_) => {
                tracing::warn!(
                    target: LOG_TARGET,
                    "a response before `initialize`, to no request of the server's; ignored"
                );
                return false;
            }
        };
        match &request.request {
            ClientRequest::InitializeRequest(_) => self.begun = true,
            ClientRequest::PingRequest(_) | ClientRequest::DiscoverRequest(_) => {}
            other => {
                let meta = other.get_meta();
                let missing = meta.missing_required_keys(&ProtocolVersion::V_2026_07_28);
                let inline = meta
                    .protocol_version()
                    .filter(|v| missing.is_empty() && self.versions.contains(v));
                if inline.is_some() {
                    self.begun = true;
                } else {
                    self.refused
                        .insert(request.id.clone(), other.method().to_string());
                }
            }
        }
        true
    }

    /// Words rmcp's refusal of a request that came before the lifecycle
    /// (its text names missing `_meta` keys, which misleads a client that
    /// simply forgot `initialize`), and logs it.
    pub(super) fn word_refusal(&mut self, message: &mut TxJsonRpcMessage<RoleServer>) {
        if self.refused.is_empty() {
            return;
        }
        let JsonRpcMessage::Error(error) = message else {
            return;
        };
        let Some(method) = error.id.as_ref().and_then(|id| self.refused.remove(id)) else {
            return;
        };
        tracing::warn!(
            target: LOG_TARGET,
            method,
            code = error.error.code.0,
            "a request before `initialize`; answered with an error"
        );
        error.error.message = format!(
            "`{method}` before `initialize`: send `initialize` first (a 2026-07-28 client \
             instead gives each request its `_meta`: {})",
            error.error.message
        )
        .into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(value: serde_json::Value) -> RxJsonRpcMessage<RoleServer> {
        serde_json::from_value(value).expect("a client message")
    }

    fn lifecycle() -> Lifecycle {
        Lifecycle::new(ProtocolVersion::KNOWN_VERSIONS.to_vec())
    }

    #[test]
    fn before_initialize_notifications_are_dropped_and_requests_refused() {
        let mut l = lifecycle();
        let early = message(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert!(!l.admit(&early));
        let response = message(json!({"jsonrpc": "2.0", "id": 9, "result": {}}));
        assert!(!l.admit(&response));
        let ping = message(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
        assert!(l.admit(&ping));
        let list = message(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
        assert!(l.admit(&list));
        assert!(!l.begun);

        let mut refusal = TxJsonRpcMessage::<RoleServer>::error(
            rmcp::model::ErrorData::invalid_params("request _meta is missing", None),
            Some(RequestId::Number(2)),
        );
        l.word_refusal(&mut refusal);
        let text = serde_json::to_value(&refusal).unwrap()["error"]["message"].clone();
        let text = text.as_str().unwrap();
        assert!(
            text.starts_with("`tools/list` before `initialize`"),
            "{text}"
        );
        assert!(text.ends_with("request _meta is missing)"), "{text}");

        let init = message(json!({"jsonrpc": "2.0", "id": 3, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}));
        assert!(l.admit(&init));
        assert!(l.admit(&early), "after initialize everything goes on");
    }

    #[test]
    fn a_request_with_its_own_supported_version_begins_a_lifecycle() {
        let current = ProtocolVersion::V_2026_07_28;
        let with = |version: &str| {
            message(
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": version,
                    "io.modelcontextprotocol/clientCapabilities": {},
                }}}),
            )
        };
        let mut l = lifecycle();
        assert!(l.admit(&with("2099-01-01")));
        assert!(!l.begun, "an unsupported version is refused");
        assert!(l.admit(&with(current.as_str())));
        assert!(l.begun);
    }
}

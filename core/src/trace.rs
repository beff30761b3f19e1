//! W3C Trace Context: the `traceparent` a client sent with the request (or the WebSocket frame)
//! that caused a change is carried onto the change's topic records, so a consumer can join an
//! event to the caller's trace. Only what a client sent is carried: LiveChat starts no traces
//! of its own, and a request without one costs nothing.

use std::future::Future;

tokio::task_local! {
    static TRACEPARENT: String;
}

/// The record header's name.
pub const HEADER: &str = "traceparent";

/// A valid version-00 `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, lower case, ids not all
/// zero), or None: a malformed one is dropped, as the specification asks.
pub fn parse(value: &str) -> Option<String> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    match parts.as_slice() {
        [version, trace, parent, flags]
            if *version == "00"
                && hex(trace, 32)
                && nonzero(trace)
                && hex(parent, 16)
                && nonzero(parent)
                && hex(flags, 2) =>
        {
            Some(parts.join("-"))
        }
        _ => None,
    }
}

/// Runs `f` with `traceparent` as the current one (if any).
pub async fn scope<F: Future>(traceparent: Option<String>, f: F) -> F::Output {
    match traceparent {
        Some(t) => TRACEPARENT.scope(t, f).await,
        None => f.await,
    }
}

/// The headers a record built now carries: the current `traceparent`, if a client sent one.
pub fn record_headers() -> Vec<(String, String)> {
    TRACEPARENT
        .try_with(|t| vec![(HEADER.to_string(), t.clone())])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_traceparent_is_kept() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(parse(ok).as_deref(), Some(ok));
        assert_eq!(parse(&format!(" {ok} ")).as_deref(), Some(ok));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn records_carry_the_scoped_traceparent_and_only_inside_the_scope() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string();
        let inside = scope(Some(tp.clone()), async { record_headers() }).await;
        assert_eq!(inside, vec![(HEADER.to_string(), tp)]);
        assert!(record_headers().is_empty());
        assert!(scope(None, async { record_headers() }).await.is_empty());
    }
}

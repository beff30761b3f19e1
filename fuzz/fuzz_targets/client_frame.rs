//! A socket's text frame, as any client could send it: parsing never panics, and a frame that
//! is refused is answered with an error frame that is itself a JSON object naming its code.

#![no_main]

use libfuzzer_sys::fuzz_target;
use livechat_ingress::ws::protocol::parse;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // The socket layer refuses text frames that are not UTF-8 (close 1007) before parsing.
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(answer) = parse(raw) {
        let v: Value = serde_json::from_str(&answer).expect("an error frame is JSON");
        assert_eq!(v["type"], "error", "{answer}");
        let code = v["code"].as_str().expect("an error frame names its code");
        assert!(code == "bad_json" || code == "bad_frame", "{answer}");
    }
});

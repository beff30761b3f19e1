//! The binary's command line (this test also makes cargo build the binary that the end-to-end
//! tests in `tests/` spawn).

use std::process::Command;

#[test]
fn prints_the_effective_configuration_with_env_overrides() {
    let out = Command::new(env!("CARGO_BIN_EXE_livechat"))
        .arg("config")
        .env("LIVECHAT_LIMITS__MAX_MESSAGE_CHARS", "123")
        .env("LIVECHAT_INGRESS__LISTEN", "127.0.0.1:9999")
        // Variables outside the configuration's sections are not configuration.
        .env("LIVECHAT_KAFKA_BROKERS", "127.0.0.1:19092")
        .output()
        .expect("run livechat config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("max_message_chars = 123"), "{text}");
    assert!(text.contains("listen = \"127.0.0.1:9999\""), "{text}");
}

#[test]
fn rejects_an_invalid_configuration_with_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_livechat"))
        .arg("config")
        .env("LIVECHAT_LOG__PARTITIONS", "0")
        .env("LIVECHAT_INGRESS__LISTN", "typo")
        .output()
        .expect("run livechat config");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listn") || err.contains("partitions"), "{err}");
}

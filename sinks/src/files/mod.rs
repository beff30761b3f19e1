//! Where shared files are kept ([`livechat_core::ports::FileStore`]): a directory on local disk
//! (`local.rs`), one file per key.

mod local;

pub use local::LocalFiles;

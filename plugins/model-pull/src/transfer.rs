//! Bindings to `jobhost:plugin/transfer` (`wit/job.wit`, world `puller`): the host
//! moves a download's body into its blob file and hashes it on the way, natively.
//! The WASI types it takes are the `wasip2` crate's, so the body stream of
//! [`crate::http`] and the descriptors opened under `/models` are passed as they are.

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package jobhost:model-pull;
        world transfer-user {
            import jobhost:plugin/transfer@0.1.0;
        }
    ",
    world: "transfer-user",
    with: {
        "jobhost:plugin/transfer@0.1.0": generate,
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
        "wasi:clocks/wall-clock@0.2.12": wasip2::clocks::wall_clock,
        "wasi:filesystem/types@0.2.12": wasip2::filesystem::types,
    },
});

pub use self::jobhost::plugin::transfer::{Sha256, TransferError, copy};

/// What a failed transfer tells a user.
pub fn describe(e: TransferError) -> String {
    match e {
        TransferError::Denied => "the host did not grant this job native transfers".to_owned(),
        TransferError::Stream(why) | TransferError::File(why) => why,
    }
}

//! The client side of `LOAD DATA LOCAL INFILE`: when the target asks for the
//! file of a replayed statement-based LOAD DATA, stream the spooled contents.

use std::io;

use bytes::Bytes;
use futures_util::stream;
use mysql_async::InfileData;

use crate::source::load_data::LoadData;

/// MySQL's ER_CLIENT_LOCAL_FILES_DISABLED: local_infile is OFF on the server.
pub const ER_CLIENT_LOCAL_FILES_DISABLED: u32 = 3948;

/// What the operator must change when the target refuses the file.
pub const LOCAL_INFILE_HINT: &str = "replaying a LOAD DATA that the source logged as a statement \
     (binlog_format=STATEMENT) needs local_infile=ON on the target";

/// Bytes sent per packet; the server reassembles the file from any split.
const CHUNK: usize = 64 << 10;

/// The handler for one statement, installed on the session right before it.
pub async fn handler(data: LoadData) -> mysql_async::Result<InfileData> {
    let chunks = stream::unfold(Some(0u64), move |offset| {
        let data = data.clone();
        async move {
            let offset = offset?;
            if offset >= data.size() {
                return None;
            }
            let read = tokio::task::spawn_blocking(move || data.read_at(offset, CHUNK))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
            Some(match read {
                Ok(bytes) => {
                    let next = offset + bytes.len() as u64;
                    (Ok(Bytes::from(bytes)), Some(next))
                }
                // The driver ends the transfer on an error; stop here too.
                Err(e) => (Err(e), None),
            })
        }
    });
    Ok(Box::pin(chunks) as InfileData)
}

//! The relay's own MySQL client for the binlog dump. mysql_async hands events
//! out only as decoded copies; reading the packets here lets a Rows event go
//! from the socket into one buffer of its final size, which then becomes the
//! `Step::Rows` the apply side sends (see `read_event`).
//!
//! It does what the source side needs and no more: connect (TLS per ssl_mode,
//! caching_sha2_password / mysql_native_password), text queries returning one
//! row, COM_REGISTER_SLAVE, COM_BINLOG_DUMP_GTID and the event stream, with
//! the semi-synchronous replication header when the dump asked for it.

mod auth;
pub mod tls;

use std::time::Duration;

use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{
    AuthPlugin, ComBinlogDumpGtid, ComRegisterSlave, ErrPacket, HandshakePacket, HandshakeResponse,
    Sid, SslRequest,
};
use mysql_common::proto::MySerialize;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tracing::debug;

use crate::config::{Master, SslMode};
use crate::conn::{self, CR_CONN_HOST_ERROR, CR_SERVER_LOST, CR_SSL_CONNECTION_ERROR, ConnError};
use crate::source::event_bytes::{self, HEADER_LEN};
use crate::wire::{MAX_CHUNK, PacketWriter, Packets, WireError};

use self::tls::TlsSetupError;

/// Largest packet other than a binlog event the client accepts (result rows
/// hold GTID sets, which can be long); events are bounded by their own size.
const MAX_PACKET: usize = 16 * 1024 * 1024;
/// COM_QUERY.
const COM_QUERY: u8 = 0x03;
/// utf8mb4_general_ci, the handshake's one-byte collation.
const UTF8MB4_GENERAL_CI: u8 = 45;
/// Reads from a plaintext socket go through a buffer of this size.
const READ_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("ERROR {code} ({state}): {message}")]
    Server {
        code: u16,
        state: String,
        message: String,
    },
    #[error("the server does not support TLS")]
    NoTls,
    #[error("TLS setup: {0}")]
    TlsSetup(#[from] TlsSetupError),
    #[error("TLS handshake: {0}")]
    TlsHandshake(std::io::Error),
    #[error("cannot reach the server: {0}")]
    Unreachable(std::io::Error),
    #[error("authentication: {0}")]
    Auth(String),
    #[error("unexpected {what} from the server")]
    Protocol { what: &'static str },
}

impl ClientError {
    /// The MySQL error number, as the mysql client would report it.
    pub fn errno(&self) -> u32 {
        match self {
            ClientError::Server { code, .. } => u32::from(*code),
            ClientError::NoTls | ClientError::TlsSetup(_) | ClientError::TlsHandshake(_) => {
                CR_SSL_CONNECTION_ERROR
            }
            ClientError::Unreachable(_) => CR_CONN_HOST_ERROR,
            ClientError::Wire(_) | ClientError::Auth(_) | ClientError::Protocol { .. } => {
                CR_SERVER_LOST
            }
        }
    }

    /// Whether the same request may succeed later (see `conn::is_transient`).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Wire(_) | ClientError::Unreachable(_) => true,
            ClientError::Server { code, .. } => conn::is_transient_server_code(*code),
            _ => false,
        }
    }

    /// A connection failure in the words `conn::connect` uses for the same failure.
    fn into_conn_error(self, master: &Master) -> ConnError {
        let message = match &self {
            ClientError::Server {
                code,
                state,
                message,
            } => conn::server_error(*code, state, message),
            ClientError::NoTls => conn::no_tls(master),
            ClientError::TlsSetup(e) => conn::tls_setup_failed(master, e),
            ClientError::TlsHandshake(io) => {
                conn::tls_handshake_failed(master, io).unwrap_or_else(|| io.to_string())
            }
            ClientError::Unreachable(io) => io.to_string(),
            other => other.to_string(),
        };
        conn::failed(master, self.errno(), message)
    }
}

/// A server's ERR packet as an error.
fn server_error(packet: &[u8], caps: CapabilityFlags) -> ClientError {
    match ParseBuf(packet).parse::<ErrPacket<'_>>(caps) {
        Ok(ErrPacket::Error(e)) => ClientError::Server {
            code: e.error_code(),
            state: e
                .sql_state_ref()
                .map_or_else(|| "HY000".to_string(), |s| s.as_str().into_owned()),
            message: e.message_str().into_owned(),
        },
        _ => ClientError::Protocol {
            what: "error packet",
        },
    }
}

/// The semi-sync header's first byte (kPacketMagicNum, plugin/semisync).
const SEMI_SYNC_MAGIC: u8 = 0xef;
/// The semi-sync header's flag: the source waits for an acknowledgement
/// of this event (kPacketFlagSync).
const SEMI_SYNC_ACK_REQUESTED: u8 = 0x01;

/// An event of the binlog stream.
#[derive(Debug)]
pub struct Streamed {
    /// The event: header, body, checksum.
    pub bytes: Vec<u8>,
    /// A semi-synchronous source waits for the acknowledgement of this event.
    pub ack_requested: bool,
}

/// An authenticated connection to a master.
pub struct Client {
    packets: Packets,
    caps: CapabilityFlags,
    /// The dump asked for semi-sync: every event comes with its header.
    semi_sync: bool,
}

impl Client {
    /// Connect to `master` honouring its ssl_mode, within `timeout`.
    pub async fn connect(master: &Master, timeout: Duration) -> Result<Client, ConnError> {
        conn::check_tls_files(master)?;
        match tokio::time::timeout(timeout, Client::handshake(master)).await {
            Err(_) => Err(conn::timed_out(master, timeout)),
            Ok(result) => result.map_err(|e| e.into_conn_error(master)),
        }
    }

    async fn handshake(master: &Master) -> Result<Client, ClientError> {
        let connector = tls::connector(&master.tls)?;
        let tcp = TcpStream::connect((master.host.as_str(), master.port))
            .await
            .map_err(ClientError::Unreachable)?;
        // Best effort: small commands and acks should not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        // Packet and event headers are read a few bytes at a time: buffered,
        // that is one system call per batch of events. A read larger than the
        // buffer (a big event's body) still goes straight into its own buffer.
        let tcp = BufReader::with_capacity(READ_BUFFER, tcp);
        let mut packets = Packets::new(Box::new(tcp), MAX_PACKET);

        let greeting = packets.read().await?;
        if greeting.first() == Some(&0xff) {
            return Err(server_error(&greeting, CapabilityFlags::empty()));
        }
        let hs: HandshakePacket<'_> = ParseBuf(&greeting)
            .parse(())
            .map_err(|_| ClientError::Protocol { what: "greeting" })?;
        let nonce = hs.nonce();
        let plugin = match hs.auth_plugin() {
            Some(AuthPlugin::CachingSha2Password) => AuthPlugin::CachingSha2Password,
            _ => AuthPlugin::MysqlNativePassword,
        };
        let server_caps = hs.capabilities();
        let version = hs.server_version_parsed().unwrap_or((0, 0, 0));
        debug!(master = %master.name, ?version, "connected; authenticating");

        let mut caps = client_caps() & server_caps;
        let mut secure = false;
        if let Some(connector) = connector {
            if server_caps.contains(CapabilityFlags::CLIENT_SSL) {
                caps |= CapabilityFlags::CLIENT_SSL;
                let request = SslRequest::new(caps, MAX_PACKET as u32, UTF8MB4_GENERAL_CI);
                write_struct(&mut packets, &request).await?;
                let (stream, framing) = packets.into_parts();
                let name = tls::server_name(&master.host)?;
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(ClientError::TlsHandshake)?;
                packets = Packets::from_parts(Box::new(stream), framing);
                secure = true;
            } else if master.tls.ssl_mode != SslMode::Preferred {
                return Err(ClientError::NoTls);
            }
        }

        let password = master.password.expose();
        let scramble = auth::scramble(&plugin, password, &nonce);
        let response = HandshakeResponse::new(
            scramble.as_deref(),
            version,
            Some(master.user.as_bytes()),
            None::<&[u8]>,
            Some(plugin.borrow()),
            caps,
            None,
            MAX_PACKET as u32,
        );
        write_struct(&mut packets, &response).await?;
        let mut client = Client {
            packets,
            caps,
            semi_sync: false,
        };
        auth::complete(&mut client, plugin.into_owned(), nonce, password, secure).await?;
        debug!(master = %master.name, secure, "authenticated");
        Ok(client)
    }

    /// Run a statement that returns no rows.
    pub async fn exec(&mut self, sql: &str) -> Result<(), ClientError> {
        self.query(sql).await?;
        let p = self.packets.read().await?;
        match p.first() {
            Some(0x00) => Ok(()),
            Some(0xff) => Err(server_error(&p, self.caps)),
            _ => Err(ClientError::Protocol {
                what: "result set for a statement",
            }),
        }
    }

    /// Run a query and return its first row (text values, `None` for NULL).
    pub async fn query_row(
        &mut self,
        sql: &str,
    ) -> Result<Option<Vec<Option<String>>>, ClientError> {
        self.query(sql).await?;
        let p = self.packets.read().await?;
        let columns = match p.first() {
            Some(0xff) => return Err(server_error(&p, self.caps)),
            Some(0x00) => return Ok(None),
            _ => ParseBuf(&p)
                .checked_eat_lenenc_int()
                .ok_or(ClientError::Protocol {
                    what: "column count",
                })?,
        };
        for _ in 0..columns {
            self.packets.read().await?;
        }
        let mut first = None;
        loop {
            let p = self.packets.read().await?;
            match p.first() {
                // An OK packet with header 0xfe ends a result set
                // (CLIENT_DEPRECATE_EOF); a row starting with 0xfe is longer.
                Some(0xfe) if p.len() < MAX_CHUNK => return Ok(first),
                Some(0xff) => return Err(server_error(&p, self.caps)),
                _ if first.is_none() => first = Some(parse_row(&p, columns)?),
                _ => {}
            }
        }
    }

    async fn query(&mut self, sql: &str) -> Result<(), ClientError> {
        let mut p = Vec::with_capacity(1 + sql.len());
        p.push(COM_QUERY);
        p.extend_from_slice(sql.as_bytes());
        self.packets.reset_seq();
        self.packets.write(&p);
        self.packets.flush().await?;
        Ok(())
    }

    /// COM_REGISTER_SLAVE then COM_BINLOG_DUMP_GTID from the GTIDs in `have`,
    /// as mysql_async's `get_binlog_stream` sends them. `semi_sync`: the
    /// session asked for semi-sync (`@rpl_semi_sync_replica`), so each event
    /// comes with the semi-sync header.
    pub async fn dump(
        &mut self,
        server_id: u32,
        report_host: &str,
        report_port: u16,
        have: Vec<Sid<'static>>,
        semi_sync: bool,
    ) -> Result<(), ClientError> {
        self.semi_sync = semi_sync;
        let register = ComRegisterSlave::new(server_id)
            .with_hostname(report_host.as_bytes())
            .with_port(report_port);
        self.packets.reset_seq();
        write_struct(&mut self.packets, &register).await?;
        let p = self.packets.read().await?;
        match p.first() {
            Some(0x00) => {}
            Some(0xff) => return Err(server_error(&p, self.caps)),
            _ => {
                return Err(ClientError::Protocol {
                    what: "answer to COM_REGISTER_SLAVE",
                });
            }
        }
        let dump = ComBinlogDumpGtid::new(server_id)
            .with_pos(4)
            .with_sids(have);
        self.packets.reset_seq();
        write_struct(&mut self.packets, &dump).await
    }

    /// Wait at most `timeout` for each read from the socket.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.packets.set_read_timeout(Some(timeout));
    }

    /// Split off the writing side, for semi-sync acknowledgements sent while
    /// this client keeps reading the stream (see `Acknowledger`).
    pub fn split(self) -> (Client, PacketWriter) {
        let (packets, writer) = self.packets.split();
        (
            Client {
                packets,
                caps: self.caps,
                semi_sync: self.semi_sync,
            },
            writer,
        )
    }

    /// The next packet of the binlog stream: an event (`Some`), the end of
    /// the stream (`None`), or the server's error. The event is read into a
    /// buffer of exactly the size its header announces, and nowhere else.
    pub async fn read_event(&mut self) -> Result<Option<Streamed>, ClientError> {
        let caps = self.caps;
        let mut payload = self.packets.begin().await?;
        let mut status = [0u8];
        payload.read_exact(&mut status).await?;
        match status[0] {
            0x00 => {}
            // Errors and the end marker are small: read them whole.
            0xff | 0xfe => {
                let mut packet = status.to_vec();
                packet.extend(payload.read_to_end(MAX_PACKET).await?);
                return if status[0] == 0xff {
                    Err(server_error(&packet, caps))
                } else {
                    Ok(None)
                };
            }
            _ => {
                return Err(ClientError::Protocol {
                    what: "packet in the binlog stream",
                });
            }
        }
        let mut ack_requested = false;
        if self.semi_sync {
            let mut semi = [0u8; 2];
            payload.read_exact(&mut semi).await?;
            if semi[0] != SEMI_SYNC_MAGIC {
                return Err(ClientError::Protocol {
                    what: "event without the semi-sync header",
                });
            }
            ack_requested = semi[1] & SEMI_SYNC_ACK_REQUESTED != 0;
        }
        let mut header = [0u8; HEADER_LEN];
        payload.read_exact(&mut header).await?;
        let mut event = event_bytes::buffer_for(&header, 0)
            .map_err(|_| ClientError::Protocol { what: "event size" })?;
        payload.read_exact(&mut event[HEADER_LEN..]).await?;
        payload.finish().await?;
        Ok(Some(Streamed {
            bytes: event,
            ack_requested,
        }))
    }

    /// Say goodbye (COM_QUIT) and close; errors do not matter any more.
    pub async fn close(mut self) {
        self.packets.reset_seq();
        self.packets.write(&[0x01]);
        let _ = self.packets.flush().await;
        self.packets.shutdown().await;
    }
}

fn client_caps() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
}

async fn write_struct(packets: &mut Packets, value: &impl MySerialize) -> Result<(), ClientError> {
    let mut p = Vec::new();
    value.serialize(&mut p);
    packets.write(&p);
    packets.flush().await?;
    Ok(())
}

/// A text-protocol row: length-encoded strings, 0xfb for NULL.
fn parse_row(packet: &[u8], columns: u64) -> Result<Vec<Option<String>>, ClientError> {
    let mut buf = ParseBuf(packet);
    let bad = || ClientError::Protocol { what: "row" };
    (0..columns)
        .map(|_| {
            if buf.0.first() == Some(&0xfb) {
                buf.skip(1);
                return Ok(None);
            }
            let value = buf.checked_eat_lenenc_str().ok_or_else(bad)?;
            Ok(Some(String::from_utf8_lossy(value).into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client over one end of an in-memory pipe, and the server's end.
    fn pipe() -> (Client, Packets) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = Client {
            packets: Packets::new(Box::new(a), MAX_PACKET),
            caps: client_caps(),
            semi_sync: false,
        };
        (client, Packets::new(Box::new(b), MAX_PACKET))
    }

    fn event_of(size: usize) -> Vec<u8> {
        let mut e: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
        e[9..13].copy_from_slice(&(size as u32).to_le_bytes());
        e
    }

    #[tokio::test]
    async fn events_are_read_into_buffers_of_their_own_size() {
        let (mut client, mut server) = pipe();
        // Larger than MAX_PACKET, across two continuation chunks; and one whose
        // packet (status byte + event) fills a chunk exactly.
        let sizes = [MAX_PACKET + 40, 0xff_ff_ff - 1, 100];
        let events: Vec<Vec<u8>> = sizes.iter().map(|&n| event_of(n)).collect();
        let sent = events.clone();
        let writer = tokio::spawn(async move {
            for e in &sent {
                let mut p = vec![0x00];
                p.extend_from_slice(e);
                server.write(&p);
                server.flush().await.unwrap();
            }
            server.write(&[0xfe, 0, 0, 2, 0]);
            server.flush().await.unwrap();
            server
        });
        for expected in &events {
            let got = client.read_event().await.unwrap().unwrap().bytes;
            assert_eq!(got.len(), expected.len());
            assert_eq!(got.capacity(), expected.len(), "no spare allocation");
            assert!(got == *expected);
        }
        assert!(client.read_event().await.unwrap().is_none());
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn semi_sync_headers_are_stripped_and_their_ack_flag_kept() {
        let (mut client, mut server) = pipe();
        client.semi_sync = true;
        for flag in [0x00, 0x01] {
            let mut p = vec![0x00, SEMI_SYNC_MAGIC, flag];
            p.extend_from_slice(&event_of(40));
            server.write(&p);
        }
        let mut p = vec![0x00];
        p.extend_from_slice(&event_of(40));
        server.write(&p);
        server.flush().await.unwrap();
        for requested in [false, true] {
            let got = client.read_event().await.unwrap().unwrap();
            assert_eq!(got.bytes, event_of(40));
            assert_eq!(got.ack_requested, requested);
        }
        assert!(matches!(
            client.read_event().await,
            Err(ClientError::Protocol { .. })
        ));
    }

    #[tokio::test]
    async fn a_size_that_disagrees_with_the_packet_is_an_error() {
        let (mut client, mut server) = pipe();
        let mut p = vec![0x00];
        p.extend_from_slice(&event_of(50));
        p.push(0); // one byte more than the header says
        server.write(&p);
        server.flush().await.unwrap();
        assert!(matches!(
            client.read_event().await,
            Err(ClientError::Wire(WireError::Malformed(_)))
        ));
    }

    #[tokio::test]
    async fn server_errors_in_the_stream_keep_code_and_message() {
        let (mut client, mut server) = pipe();
        let mut p = vec![0xff];
        p.extend_from_slice(&1236u16.to_le_bytes());
        p.extend_from_slice(b"#HY000purged");
        server.write(&p);
        server.flush().await.unwrap();
        match client.read_event().await {
            Err(ClientError::Server { code, message, .. }) => {
                assert_eq!((code, message.as_str()), (1236, "purged"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rows_hold_strings_and_nulls() {
        let row = [3, b'a', b'b', b'c', 0xfb, 0];
        assert_eq!(
            parse_row(&row, 3).unwrap(),
            vec![Some("abc".into()), None, Some(String::new())]
        );
        assert!(parse_row(&row[..2], 1).is_err());
    }
}

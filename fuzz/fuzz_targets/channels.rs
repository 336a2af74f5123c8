//! The SCTP input path of data channels: arbitrary packets fed to an established
//! association (with an open channel) as if the DTLS session had decrypted them, on the
//! server's side or (input byte 1's low bit) the client's, whose endpoint once had no
//! server config and panicked on an INIT it could not route.
//!
//! SCTP packets carry a CRC32c and a verification tag; random bytes would fail both and never
//! reach the parsers. So each input packet gets a valid checksum, and (unless its first byte
//! is odd) the association's real verification tag. Between packets, genuine traffic runs
//! both ways. Beyond "no panic", it checks the bounds a user relies on: the queue of packets
//! to send and the unread messages stay bounded.
#![no_main]

use std::time::{Duration, Instant};

use dtls_peer::channels::{ChannelOptions, Channels};
use dtls_peer::ChannelsConfig;
use libfuzzer_sys::fuzz_target;

const MTU: usize = 1163;
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

fn config() -> ChannelsConfig {
    ChannelsConfig {
        max_message_size: 64 << 10,
        buffer_high_water: 16 << 10,
    }
}

/// Moves packets between the two until quiet (bounded); returns the server's verification
/// tag as seen on the client's packets.
fn pump(client: &mut Channels, server: &mut Channels, now: Instant, tag: &mut [u8; 4]) {
    for _ in 0..64 {
        let mut moved = false;
        while let Some(p) = client.poll_packet() {
            if p.len() >= 8 {
                tag.copy_from_slice(&p[4..8]);
            }
            server.handle_packet(now, &p);
            moved = true;
        }
        while let Some(p) = server.poll_packet() {
            client.handle_packet(now, &p);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut client = Channels::new(now, true, MTU, config());
    let mut server = Channels::new(now, false, MTU, config());
    let mut tag = [0u8; 4];
    pump(&mut client, &mut server, now, &mut tag);
    assert!(client.is_connected() && server.is_connected());
    let id = client.open(ChannelOptions::reliable("fuzz")).unwrap();
    pump(&mut client, &mut server, now, &mut tag);
    assert_eq!(server.accept(), Some(id));

    // Packets: a 2-byte length, then that many bytes.
    let mut rest = data;
    let mut packets = 0;
    while rest.len() >= 2 && packets < 64 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])) % 2048;
        let take = len.min(rest.len() - 2);
        let mut packet = rest[2..2 + take].to_vec();
        rest = &rest[2 + take..];
        packets += 1;
        let to_client = packet.get(1).is_some_and(|b| b % 2 == 1);
        if packet.len() >= 12 {
            if packet[0] % 2 == 0 && !to_client {
                packet[4..8].copy_from_slice(&tag);
            }
            packet[8..12].fill(0);
            let sum = CRC32C.checksum(&packet);
            packet[8..12].copy_from_slice(&sum.to_le_bytes());
        }
        if to_client {
            client.handle_packet(now, &packet);
        } else {
            server.handle_packet(now, &packet);
        }
        // Genuine traffic goes on around the injected packets.
        let _ = client.send(id, &packet, packets % 2 == 0);
        now += Duration::from_millis(7);
        client.handle_timeout(now);
        server.handle_timeout(now);
        pump(&mut client, &mut server, now, &mut tag);
        while let Ok(Some(_)) = server.recv(id) {}
        let _ = server.accept();
        // Bounded: a congestion window of packets at most, and what the window allows.
        let mut queued = 0;
        while server.poll_packet().is_some() {
            queued += 1;
        }
        assert!(queued < 4096, "{queued} packets queued");
    }
});

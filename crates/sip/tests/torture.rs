//! Every RFC 4475 torture message through the parser and the endpoint
//! checks, against the expected handling in the test data's README.
//! (The MLC's own test sends the same files over UDP.)

use openturret_sip::check::check_request;
use openturret_sip::message::{Framing, ParseError, parse};

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/sip-torture-rfc4475")
}

/// What the endpoint does with a message: the status it answers, 0 for a
/// silent discard, or 1 when the request passes every check and goes on to
/// its method's handler.
fn outcome(bytes: &[u8]) -> u16 {
    match parse(bytes, Framing::Datagram) {
        Err(ParseError::Reject { code, .. }) => code,
        Err(_) => 0,
        Ok(m) if m.method().is_none() => 1,
        Ok(m) => check_request(&m).map_or(1, |r| r.code),
    }
}

#[test]
fn each_torture_message_gets_the_expected_handling() {
    // (file, acceptable outcomes). 1 = handed on to the method handler.
    let table: &[(&str, &[u16])] = &[
        ("wsinv", &[1]),
        ("esc01", &[1]),
        ("escnull", &[405]),
        ("longreq", &[1]),
        ("semiuri", &[1]),
        ("transports", &[1]),
        ("mpart01", &[405]),
        ("unreason", &[1]),
        ("noreason", &[1]),
        ("lwsdisp", &[1]),
        ("dblreq", &[405]),
        ("intmeth", &[501]),
        ("esc02", &[501]),
        ("badinv01", &[400]),
        ("clerr", &[400]),
        ("scalar02", &[400]),
        ("lwsruri", &[400]),
        ("mismatch01", &[400]),
        ("badaspec", &[400]),
        ("baddn", &[400]),
        ("ncl", &[0]),
        ("scalarlg", &[0]),
        ("bigcode", &[0]),
        ("quotbal", &[400, 1]),
        ("ltgtruri", &[400, 1]),
        ("lwsstart", &[400, 1]),
        ("trws", &[400, 1]),
        ("escruri", &[400, 1]),
        ("baddate", &[400, 1]),
        ("regbadct", &[400, 405]),
        ("badvers", &[505]),
        ("mismatch02", &[501, 400]),
        ("badbranch", &[1]),
        ("insuf", &[400]),
        ("multi01", &[400]),
        ("mcl01", &[400]),
        ("unksm2", &[400]),
        ("unkscm", &[416]),
        ("novelsc", &[416]),
        ("bext01", &[420]),
        ("invut", &[415]),
        ("regaut01", &[401, 405]),
        ("zeromf", &[1]),
        ("sdp01", &[406, 488]),
        ("cparam01", &[405]),
        ("cparam02", &[405]),
        ("regescrt", &[405]),
        ("bcast", &[1]),
        ("inv2543", &[1]),
    ];
    let mut failures = Vec::new();
    for (name, ok) in table {
        let bytes = std::fs::read(dir().join(format!("{name}.dat")))
            .unwrap_or_else(|e| panic!("the RFC 4475 test data must be present: {name}: {e}"));
        let got = outcome(&bytes);
        if !ok.contains(&got) {
            failures.push(format!("{name}: got {got}, expected one of {ok:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every file of the folder is in the table (test.dat aside).
    let listed = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".dat") && n != "test.dat")
        .count();
    assert_eq!(
        listed,
        table.len(),
        "a torture file is missing from the table"
    );
}

#[test]
fn the_parser_survives_every_truncation_and_byte_flip_of_the_torture_set() {
    // A bounded fuzz pass: every prefix of every message and a flipped
    // byte at each position must parse or fail, never panic.
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "dat") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for cut in 0..bytes.len() {
            let _ = outcome(&bytes[..cut]);
            let _ = parse(&bytes[..cut], Framing::Stream);
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            let _ = outcome(&b);
        }
    }
}

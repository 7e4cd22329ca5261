//! G.711 (ITU-T G.711): 16-bit linear samples to μ-law and A-law and back,
//! for audio the system makes itself (the recording notice).

use crate::sdp::Codec;

/// One sample in `codec`.
pub fn encode(codec: Codec, sample: i16) -> u8 {
    match codec {
        Codec::Pcmu => ulaw(sample),
        Codec::Pcma => alaw(sample),
    }
}

/// One `codec` byte as a linear sample.
pub fn decode(codec: Codec, byte: u8) -> i16 {
    match codec {
        Codec::Pcmu => from_ulaw(byte),
        Codec::Pcma => from_alaw(byte),
    }
}

fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut x = i32::from(sample);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    let x = (x.min(32_635) + BIAS) as u32;
    let exponent = (31 - x.leading_zeros()).saturating_sub(7).min(7);
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

fn from_ulaw(b: u8) -> i16 {
    let b = !b;
    let exponent = (b >> 4) & 7;
    let mantissa = i32::from(b & 0x0F);
    let mag = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if b & 0x80 != 0 { -mag } else { mag }) as i16
}

fn alaw(sample: i16) -> u8 {
    let x = i32::from(sample);
    let (sign, mag) = if x >= 0 { (0x80, x) } else { (0x00, -x - 1) };
    let mag = (mag.min(32_767) >> 3) as u32;
    let b = if mag < 32 {
        (mag >> 1) as u8
    } else {
        let exponent = (31 - mag.leading_zeros()) - 4;
        let mantissa = (mag >> exponent) & 0x0F;
        ((exponent << 4) as u8) | mantissa as u8
    };
    (sign | b) ^ 0x55
}

fn from_alaw(b: u8) -> i16 {
    let b = b ^ 0x55;
    let exponent = i32::from((b >> 4) & 7);
    let mantissa = i32::from(b & 0x0F);
    let mag = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if b & 0x80 != 0 { mag } else { -mag }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_laws_round_trip_within_their_step_and_keep_the_sign() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            for x in (-32_000i32..32_000).step_by(37) {
                let x = x as i16;
                let y = decode(codec, encode(codec, x));
                // The quantisation step grows with the level: 1/16 of it
                // at most, and a few units near zero.
                let tolerance = (i32::from(x).abs() / 16).max(16);
                assert!(
                    (i32::from(x) - i32::from(y)).abs() <= tolerance,
                    "{codec:?}: {x} came back as {y}"
                );
                if x.abs() > 64 {
                    assert_eq!(x.signum(), y.signum(), "{codec:?} {x}");
                }
            }
            // Silence is the codec's silence byte.
            assert_eq!(encode(codec, 0), codec.silence(), "{codec:?}");
        }
    }
}

//! Contacts (local per profile, and global) and speed dial keys (SPEC §2,
//! rules 4 and 5).

use super::note_change;
use crate::validate::{self, ValidationError};
use crate::{GlobalContactId, LocalContactId, ProfileId, SpeedDialId, Timestamp};

/// The four fields of a contact, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactFields {
    pub name: String,
    pub number: String,
    /// Free text ("field 3" of the reference).
    pub field3: String,
    /// Free text ("field 4" of the reference).
    pub field4: String,
}

impl ContactFields {
    pub fn new(
        name: &str,
        number: &str,
        field3: &str,
        field4: &str,
    ) -> Result<Self, ValidationError> {
        Ok(ContactFields {
            name: validate::text("name", name, 100)?,
            number: validate::phone_number("number", number)?,
            field3: validate::optional_text("field3", field3, 200)?,
            field4: validate::optional_text("field4", field4, 200)?,
        })
    }

    /// These fields with the given ones replaced (a partial update),
    /// validated again.
    pub fn patched(
        &self,
        name: Option<&str>,
        number: Option<&str>,
        field3: Option<&str>,
        field4: Option<&str>,
    ) -> Result<ContactFields, ValidationError> {
        ContactFields::new(
            name.unwrap_or(&self.name),
            number.unwrap_or(&self.number),
            field3.unwrap_or(&self.field3),
            field4.unwrap_or(&self.field4),
        )
    }

    /// The names of the fields that differ from `current`, for the audit log.
    pub fn changed_fields(&self, current: &ContactFields) -> Vec<&'static str> {
        let mut changed = Vec::new();
        note_change(&mut changed, "name", &Some(&self.name), &&current.name);
        note_change(
            &mut changed,
            "number",
            &Some(&self.number),
            &&current.number,
        );
        note_change(
            &mut changed,
            "field3",
            &Some(&self.field3),
            &&current.field3,
        );
        note_change(
            &mut changed,
            "field4",
            &Some(&self.field4),
            &&current.field4,
        );
        changed
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalContact {
    pub id: LocalContactId,
    pub profile_id: ProfileId,
    pub fields: ContactFields,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalContact {
    pub id: GlobalContactId,
    pub fields: ContactFields,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// DKA: a key dialling at once; DKM: a key kept in the user's speed dial
/// memory (exportable, SPEC rule 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpeedDialKind {
    Dka,
    Dkm,
}

impl SpeedDialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpeedDialKind::Dka => "DKA",
            SpeedDialKind::Dkm => "DKM",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DKA" => Ok(SpeedDialKind::Dka),
            "DKM" => Ok(SpeedDialKind::Dkm),
            _ => Err(ValidationError::new("kind", "must be DKA or DKM")),
        }
    }
}

/// Highest key position on a speed dial grid.
pub const SPEED_DIAL_MAX_POSITION: u32 = 999;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeedDialFields {
    pub kind: SpeedDialKind,
    /// Key position on the grid, from 1; unique per profile and kind.
    pub position: u32,
    pub name: String,
    pub number: String,
}

impl SpeedDialFields {
    pub fn new(
        kind: &str,
        position: i64,
        name: &str,
        number: &str,
    ) -> Result<Self, ValidationError> {
        let kind = SpeedDialKind::parse(kind)?;
        if !(1..=SPEED_DIAL_MAX_POSITION as i64).contains(&position) {
            return Err(ValidationError::new(
                "position",
                format!("must be between 1 and {SPEED_DIAL_MAX_POSITION}"),
            ));
        }
        Ok(SpeedDialFields {
            kind,
            position: position as u32,
            name: validate::text("name", name, 100)?,
            number: validate::phone_number("number", number)?,
        })
    }

    pub fn changed_fields(&self, current: &SpeedDialFields) -> Vec<&'static str> {
        let mut changed = Vec::new();
        note_change(&mut changed, "kind", &Some(self.kind), &current.kind);
        note_change(
            &mut changed,
            "position",
            &Some(self.position),
            &current.position,
        );
        note_change(&mut changed, "name", &Some(&self.name), &&current.name);
        note_change(
            &mut changed,
            "number",
            &Some(&self.number),
            &&current.number,
        );
        changed
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeedDial {
    pub id: SpeedDialId,
    pub profile_id: ProfileId,
    pub fields: SpeedDialFields,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_fields_name_the_bad_field() {
        assert_eq!(
            ContactFields::new("Ann", "abc", "", "").unwrap_err().field,
            "number"
        );
        assert_eq!(
            ContactFields::new("", "1", "", "").unwrap_err().field,
            "name"
        );
    }

    #[test]
    fn speed_dial_kind_and_position_are_checked() {
        assert_eq!(
            SpeedDialFields::new("DKX", 1, "a", "1").unwrap_err().field,
            "kind"
        );
        assert_eq!(
            SpeedDialFields::new("dkm", 0, "a", "1").unwrap_err().field,
            "position"
        );
        assert_eq!(
            SpeedDialFields::new("dkm", 3, "a", "1").unwrap().kind,
            SpeedDialKind::Dkm
        );
    }
}

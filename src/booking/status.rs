//! The statuses of activities and tickets, as the database stores them (text
//! columns with CHECK constraints) and as the code compares them: enums, so a
//! misspelt status is a compile error, not a silent mismatch.

use std::fmt;

/// `draft → published → archived`; a published activity never goes back to draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ActivityStatus {
    Draft,
    Published,
    Archived,
}

impl ActivityStatus {
    /// The stored value, also used as a CSS class and in the shell's output.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityStatus::Draft => "draft",
            ActivityStatus::Published => "published",
            ActivityStatus::Archived => "archived",
        }
    }

    /// As an organiser reads it.
    pub fn label(self) -> &'static str {
        match self {
            ActivityStatus::Draft => "草稿",
            ActivityStatus::Published => "已发布",
            ActivityStatus::Archived => "已归档",
        }
    }
}

/// `valid → used` at the door, or `valid → cancelled`; live means valid or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum TicketStatus {
    Valid,
    Used,
    Cancelled,
}

impl TicketStatus {
    /// The stored value, also used as a CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Valid => "valid",
            TicketStatus::Used => "used",
            TicketStatus::Cancelled => "cancelled",
        }
    }

    /// As students and organisers read it: on pages, in replies and exports.
    pub fn label(self) -> &'static str {
        match self {
            TicketStatus::Valid => "有效",
            TicketStatus::Used => "已检票",
            TicketStatus::Cancelled => "已退票",
        }
    }
}

impl fmt::Display for ActivityStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for TicketStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

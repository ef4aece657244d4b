//! Integration tests: the real server over HTTP on a real PostgreSQL.
//! One test binary, so the whole suite shares one throwaway cluster.

mod common;

mod admin_console;
mod admin_login;
mod browser;
mod checkin_export;
mod demo;
mod hardening;
mod housekeeping;
mod landing;
mod layers;
mod menu_page;
mod notifications;
mod rush;
mod serve_binary;
mod simulator;
mod student_journey;
mod trust;
mod wechat_api;
mod wechat_endpoint;

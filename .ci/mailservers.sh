#!/usr/bin/env bash
# Real mail servers for the bounce tests, on 127.0.0.1 only, with private configurations
# under DIR (the system's Postfix and Dovecot services are never started):
#
#   - Postfix (Debian) listening for SMTP on SMTP_PORT. It relays
#       bounce.test  to smtp-sink on SINK_BAD_PORT, which answers every RCPT with
#                    "550 5.1.1 … User unknown", so Postfix returns a real RFC 3464 DSN
#                    to the envelope sender;
#       ok.test      to smtp-sink on SINK_OK_PORT, which accepts everything;
#       plain.test   to smtp-sink on SINK_7BIT_PORT, which does not announce 8BITMIME and
#                    writes every message it receives to DIR/sink7/ (one file each);
#       herald.test  into the Maildir of the user "bounces" (Postfix's virtual agent).
#   - Dovecot (Debian dovecot-imapd, dovecot-pop3d) serving that Maildir over IMAP on
#     IMAP_PORT and POP3 on POP3_PORT, user "bounces", password in DIR/password.
#
# The packages (and SpamAssassin, for `herald validate --spam`) are installed once (apt)
# with a policy-rc.d that forbids starting services. The pids of what was started are written to DIR/pids (one a line); stop
# everything with `.ci/mailservers.sh stop DIR`.
#
# Usage: .ci/mailservers.sh start DIR SMTP_PORT SINK_BAD_PORT SINK_OK_PORT SINK_7BIT_PORT IMAP_PORT POP3_PORT
#        .ci/mailservers.sh stop DIR
set -euo pipefail

run() { echo "+ $*" >&2; "$@"; }

stop() {
	local dir=$1
	[ -d "$dir" ] || return 0
	if [ -f "$dir/postfix/main.cf" ]; then
		postfix -c "$dir/postfix" stop >/dev/null 2>&1 || true
	fi
	if [ -f "$dir/dovecot/dovecot.conf" ]; then
		doveadm -c "$dir/dovecot/dovecot.conf" stop >/dev/null 2>&1 || true
	fi
	if [ -f "$dir/pids" ]; then
		while read -r pid; do
			[ -n "$pid" ] || continue
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "$pid" 2>/dev/null || true
		done <"$dir/pids"
		rm -f "$dir/pids"
	fi
}

install() {
	local missing=()
	command -v postfix >/dev/null || missing+=(postfix)
	command -v smtp-sink >/dev/null || missing+=(postfix)
	command -v dovecot >/dev/null || missing+=(dovecot-core dovecot-imapd dovecot-pop3d)
	[ -e /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
	[ -e /usr/lib/dovecot/pop3 ] || missing+=(dovecot-pop3d)
	# SpamAssassin for `herald validate --spam`, in the same apt run.
	command -v spamassassin >/dev/null || missing+=(spamassassin)
	[ ${#missing[@]} -gt 0 ] || return 0
	local policy=/usr/sbin/policy-rc.d made_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod +x "$policy"
		made_policy=1
	fi
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	run apt-get update -qq >&2
	run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
	[ -z "$made_policy" ] || rm -f "$policy"
}

start() {
	local usage="usage: $0 start DIR SMTP_PORT SINK_BAD_PORT SINK_OK_PORT SINK_7BIT_PORT IMAP_PORT POP3_PORT"
	local dir=${1:?$usage} smtp=${2:?$usage} bad=${3:?$usage} ok=${4:?$usage} seven=${5:?$usage} imap=${6:?$usage} pop3=${7:?$usage}
	for p in "$smtp" "$bad" "$ok" "$seven" "$imap" "$pop3"; do
		case $p in '' | *[!0-9]*) echo "$0: ports must be numbers, got '$p'" >&2; exit 2 ;; esac
	done
	install
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	# The servers run as their own users (postfix, nobody, heraldmail, dovecot): every
	# folder on the way to DIR must let them through.
	chmod 755 "$dir"
	if ! runuser -u nobody -- test -x "$dir"; then
		echo "$0: $dir is not reachable by other users (a parent folder is private); use a folder under /tmp" >&2
		exit 1
	fi
	stop "$dir"
	rm -rf "$dir/postfix" "$dir/dovecot" "$dir/mail" "$dir/sink7"

	# The mailbox owner: Postfix's virtual agent writes as it, Dovecot reads as it.
	id -u heraldmail >/dev/null 2>&1 || run useradd --system --no-create-home --shell /usr/sbin/nologin heraldmail
	local uid gid
	uid=$(id -u heraldmail)
	gid=$(id -g heraldmail)
	mkdir -p "$dir/mail/bounces/Maildir"/{new,cur,tmp}
	chown -R heraldmail:heraldmail "$dir/mail"

	# smtp-sink: one refusing every recipient, one accepting.
	: >"$dir/pids"
	smtp-sink -u nobody -f rcpt -B '550 5.1.1 Recipient address rejected: User unknown' "127.0.0.1:$bad" 64 \
		>"$dir/sink-bad.log" 2>&1 &
	echo $! >>"$dir/pids"
	smtp-sink -u nobody "127.0.0.1:$ok" 64 >"$dir/sink-ok.log" 2>&1 &
	echo $! >>"$dir/pids"
	mkdir -p "$dir/sink7"
	chown nobody "$dir/sink7"
	smtp-sink -u nobody -8 -d "$dir/sink7/%Y%m%d%H%M%S." "127.0.0.1:$seven" 64 >"$dir/sink-7bit.log" 2>&1 &
	echo $! >>"$dir/pids"

	# Postfix.
	local pf=$dir/postfix
	mkdir -p "$pf/queue" "$pf/data"
	cat >"$pf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.herald.test
mydomain = herald.test
myorigin = herald.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relay_domains = bounce.test ok.test plain.test
transport_maps = texthash:$pf/transport
virtual_mailbox_domains = herald.test
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = texthash:$pf/vmailbox
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtputf8_enable = yes
maillog_file_prefixes = $pf
maillog_file = $pf/maillog
alias_maps =
alias_database =
local_recipient_maps =
biff = no
EOF
	cat >"$pf/transport" <<EOF
bounce.test smtp:[127.0.0.1]:$bad
ok.test smtp:[127.0.0.1]:$ok
plain.test smtp:[127.0.0.1]:$seven
EOF
	echo "bounces@herald.test bounces/Maildir/" >"$pf/vmailbox"
	# Debian's master.cf, with no chroot (the queue is private) and smtpd on our port.
	awk -v port="$smtp" '
		/^#/ || NF < 8 { print; next }
		$1 == "smtp" && $2 == "inet" { $1 = "127.0.0.1:" port }
		$2 == "inet" || $2 == "unix" || $2 == "unix-dgram" || $2 == "fifo" || $2 == "pass" { $5 = "n" }
		{ print }
	' /etc/postfix/master.cf >"$pf/master.cf"
	chown -R postfix "$pf/queue" "$pf/data"
	run postfix -c "$pf" set-permissions >/dev/null 2>&1 || true
	run postfix -c "$pf" start
	local pid
	for _ in $(seq 1 100); do
		[ -s "$pf/queue/pid/master.pid" ] && break
		sleep 0.1
	done
	pid=$(tr -d ' ' <"$pf/queue/pid/master.pid")
	echo "$pid" >>"$dir/pids"

	# Dovecot.
	local dc=$dir/dovecot
	mkdir -p "$dc/run" "$dc/state"
	head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$dir/password"
	echo "bounces:{PLAIN}$(cat "$dir/password")::::::" >"$dc/passwd"
	chmod 640 "$dc/passwd"
	chgrp dovecot "$dc/passwd"
	cat >"$dc/dovecot.conf" <<EOF
base_dir = $dc/run
state_dir = $dc/state
log_path = $dc/log
info_log_path = $dc/log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:$dir/mail/%n/Maildir
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $dc/passwd
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$dir/mail/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $pop3
  }
  inet_listener pop3s {
    port = 0
  }
}
protocol pop3 {
  pop3_uidl_format = %08Xu%08Xv
}
EOF
	# Dovecot keeps the descriptors it is started with: not the caller's stdout.
	if ! run dovecot -c "$dc/dovecot.conf" </dev/null >"$dc/start.log" 2>&1; then
		cat "$dc/start.log" >&2
		exit 1
	fi
	for _ in $(seq 1 100); do
		[ -s "$dc/run/master.pid" ] && break
		sleep 0.1
	done
	echo "$(cat "$dc/run/master.pid")" >>"$dir/pids"

	# Wait until everything answers.
	for p in "$smtp" "$bad" "$ok" "$seven" "$imap" "$pop3"; do
		for _ in $(seq 1 100); do
			(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
			sleep 0.1
		done
	done
	echo "$0: Postfix on 127.0.0.1:$smtp, Dovecot IMAP on 127.0.0.1:$imap and POP3 on 127.0.0.1:$pop3 (user bounces, password in $dir/password)" >&2
}

case ${1:-} in
start) shift; start "$@" ;;
stop) shift; stop "${1:?usage: $0 stop DIR}" ;;
*) echo "usage: $0 start DIR SMTP_PORT SINK_BAD_PORT SINK_OK_PORT SINK_7BIT_PORT IMAP_PORT POP3_PORT | stop DIR" >&2; exit 2 ;;
esac

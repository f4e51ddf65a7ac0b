# shellcheck shell=sh
# Body of the firstrun.sh that flash-live writes on the boot partition (Raspberry Pi Imager's
# "systemd" format). systemd starts it once from the kernel command line
# (systemd.run=... systemd.unit=kernel-command-line.target) and reboots when it exits 0. The
# header above sets every FL_* value (each one shell-quoted); this part never changes. It applies
# what it can, logs each step to /var/log/flash-live-firstrun.log, removes itself and its
# cmdline.txt arguments, and exits 0 even when a step failed, so the board never boots into it again.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
FL_LOG=/var/log/flash-live-firstrun.log
FL_RUN_LOG=/run/flash-live-firstrun.log
fl_failed=""

# The log holds no secret values, but the commands' own messages might: root only.
(umask 077 && : >"$FL_RUN_LOG" && : >>"$FL_LOG")
exec 3>&1
exec >>"$FL_RUN_LOG" 2>&1
echo "flash-live firstrun.sh started $(date -u '+%Y-%m-%dT%H:%M:%SZ' 2>/dev/null)"

fl_step() {
	fl_name=$1
	shift
	echo "== $fl_name"
	if "$@"; then
		echo "ok: $fl_name"
	else
		echo "FAILED: $fl_name"
		fl_failed="$fl_failed $fl_name"
	fi
}

# Write $2 (plus a newline) to file $1 with mode $3, never world-readable in between.
fl_write() {
	(umask 077 && printf '%s\n' "$2" >"$1.flash-live.tmp") || return 1
	chmod "$3" "$1.flash-live.tmp" && mv -f "$1.flash-live.tmp" "$1"
}

fl_hostname() {
	printf '%s\n' "$FL_HOSTNAME" >/etc/hostname || return 1
	if grep -q '^127\.0\.1\.1[[:space:]]' /etc/hosts 2>/dev/null; then
		FL_H=$FL_HOSTNAME awk '/^127\.0\.1\.1[ \t]/ { print "127.0.1.1\t" ENVIRON["FL_H"]; next } { print }' /etc/hosts >/etc/hosts.flash-live.tmp &&
			cat /etc/hosts.flash-live.tmp >/etc/hosts
		rm -f /etc/hosts.flash-live.tmp
	else
		printf '127.0.1.1\t%s\n' "$FL_HOSTNAME" >>/etc/hosts
	fi
	hostname "$FL_HOSTNAME" 2>/dev/null
	return 0
}

fl_user() {
	if [ -n "$FL_PASSWORD_HASH" ] && [ -x /usr/lib/userconf-pi/userconf ]; then
		# Raspberry Pi OS: its own tool renames the first user and retires the setup wizard (as Imager does).
		/usr/lib/userconf-pi/userconf "$FL_USER" "$FL_PASSWORD_HASH" || return 1
	else
		take_over_user "$FL_USER" || return 1
		if [ -f /lib/systemd/system/userconfig.service ] || [ -f /usr/lib/systemd/system/userconfig.service ]; then
			systemctl disable userconfig.service
			systemctl enable getty@tty1.service
		fi
	fi
	if [ -n "$FL_PASSWORD_HASH" ]; then
		# chpasswd reads the hash on stdin: it never appears in a process list.
		printf '%s:%s\n' "$FL_USER" "$FL_PASSWORD_HASH" | chpasswd -e || return 1
	else
		# Keys only: no password to guess, and sudo without one (as cloud-init's lock_passwd does).
		usermod -L "$FL_USER" || return 1
		fl_write /etc/sudoers.d/flash-live-nopasswd "$FL_USER ALL=(ALL) NOPASSWD:ALL" 440 || return 1
	fi
	return 0
}

fl_ssh_keys() {
	fl_home=$(getent passwd "$FL_USER" | cut -d: -f6)
	fl_group=$(id -gn "$FL_USER") || return 1
	[ -n "$fl_home" ] || return 1
	mkdir -p "$fl_home/.ssh" && chown "$FL_USER:$fl_group" "$fl_home/.ssh" && chmod 700 "$fl_home/.ssh" || return 1
	fl_write "$fl_home/.ssh/authorized_keys" "$FL_AUTHORIZED_KEYS" 600 || return 1
	chown "$FL_USER:$fl_group" "$fl_home/.ssh/authorized_keys"
}

fl_enable_ssh() {
	# Raspberry Pi OS ships sshd disabled. Leave socket-activated setups alone.
	if systemctl -q is-enabled ssh.service 2>/dev/null || systemctl -q is-enabled ssh.socket 2>/dev/null; then
		return 0
	fi
	systemctl enable ssh.service
}

fl_sshd_password_auth() {
	# sshd keeps the first value it reads: a drop-in that sorts first, or a line at the top.
	if grep -Eqs '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/' /etc/ssh/sshd_config; then
		fl_write /etc/ssh/sshd_config.d/01-flash-live.conf "PasswordAuthentication $FL_SSH_PASSWORD_AUTH" 644
	elif [ -f /etc/ssh/sshd_config ]; then
		{ printf 'PasswordAuthentication %s\n' "$FL_SSH_PASSWORD_AUTH" && cat /etc/ssh/sshd_config; } >/etc/ssh/sshd_config.flash-live.tmp &&
			cat /etc/ssh/sshd_config.flash-live.tmp >/etc/ssh/sshd_config
		fl_rc=$?
		rm -f /etc/ssh/sshd_config.flash-live.tmp
		return "$fl_rc"
	else
		return 1
	fi
}

fl_wifi() {
	if [ -x /usr/sbin/NetworkManager ]; then
		mkdir -p /etc/NetworkManager/system-connections &&
			fl_write /etc/NetworkManager/system-connections/preconfigured.nmconnection "$FL_NM_CONNECTION" 600 || return 1
	else
		mkdir -p /etc/wpa_supplicant &&
			fl_write /etc/wpa_supplicant/wpa_supplicant.conf "$FL_WPA_SUPPLICANT_CONF" 600 || return 1
		# systemd-networkd systems start wpa_supplicant per interface.
		if systemctl -q is-enabled systemd-networkd.service 2>/dev/null; then
			fl_write /etc/wpa_supplicant/wpa_supplicant-wlan0.conf "$FL_WPA_SUPPLICANT_CONF" 600 &&
				fl_write /etc/systemd/network/25-flash-live-wlan0.network "$FL_NETWORKD_WLAN" 644 || return 1
			if [ -e /lib/systemd/system/wpa_supplicant@.service ] || [ -e /usr/lib/systemd/system/wpa_supplicant@.service ]; then
				systemctl enable wpa_supplicant@wlan0.service || return 1
			else
				echo "warning: this image has neither NetworkManager nor wpa_supplicant: the Wi-Fi settings are written" \
					"(/etc/wpa_supplicant/wpa_supplicant-wlan0.conf) but nothing will use them until the package" \
					"wpasupplicant is installed; then: systemctl enable --now wpa_supplicant@wlan0"
			fi
		fi
	fi
	# Raspberry Pi OS soft-blocks Wi-Fi until a country is set (FIELD-NOTES §1).
	rfkill unblock wifi 2>/dev/null
	for fl_f in /var/lib/systemd/rfkill/*:wlan; do
		if [ -e "$fl_f" ]; then echo 0 >"$fl_f"; fi
	done
	return 0
}

fl_timezone() {
	if [ ! -f "/usr/share/zoneinfo/$FL_TIMEZONE" ]; then
		echo "no /usr/share/zoneinfo/$FL_TIMEZONE on this system"
		return 1
	fi
	ln -sf "/usr/share/zoneinfo/$FL_TIMEZONE" /etc/localtime || return 1
	if [ -f /etc/timezone ]; then printf '%s\n' "$FL_TIMEZONE" >/etc/timezone; fi
	return 0
}

fl_keyboard() {
	fl_write /etc/default/keyboard "$FL_KEYBOARD_FILE" 644
}

fl_locale() {
	if [ -n "$FL_LOCALE_GEN" ] && [ -f /etc/locale.gen ] && command -v locale-gen >/dev/null; then
		if ! grep -qxF "$FL_LOCALE_GEN" /etc/locale.gen; then
			# Uncomment "# en_GB.UTF-8 UTF-8", or add the line.
			FL_L=$FL_LOCALE_GEN awk 'BEGIN { l = ENVIRON["FL_L"] } $0 == "# " l { print l; found = 1; next } { print } END { if (!found) print l }' \
				/etc/locale.gen >/etc/locale.gen.flash-live.tmp && cat /etc/locale.gen.flash-live.tmp >/etc/locale.gen
			rm -f /etc/locale.gen.flash-live.tmp
		fi
		locale-gen || return 1
	elif [ -n "$FL_LOCALE_GEN" ]; then
		echo "locale-gen is not installed: $FL_LOCALE is set but may not be available"
	fi
	printf 'LANG=%s\n' "$FL_LOCALE" >/etc/default/locale
}

fl_host_key() {
	fl_write "/etc/ssh/ssh_host_$1_key" "$2" 600 && fl_write "/etc/ssh/ssh_host_$1_key.pub" "$3" 644
}

fl_host_keys() {
	rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub
	fl_host_keys_data || return 1
	# Raspberry Pi OS regenerates host keys on its first normal boot: that would undo this.
	systemctl disable regenerate_ssh_host_keys.service 2>/dev/null
	return 0
}

fl_cleanup() {
	# cmdline.txt first: a script left behind runs again (harmless), arguments left behind
	# without the script would stop every boot in kernel-command-line.target.
	fl_cmdline=$(cat "$FL_BOOT_DIR/cmdline.txt") || return 1
	case $fl_cmdline in
	*"$FL_RUN_ARGS"*)
		printf '%s\n' "${fl_cmdline%%"$FL_RUN_ARGS"*}${fl_cmdline#*"$FL_RUN_ARGS"}" >"$FL_BOOT_DIR/cmdline.txt.flash-live" &&
			mv -f "$FL_BOOT_DIR/cmdline.txt.flash-live" "$FL_BOOT_DIR/cmdline.txt" || return 1
		;;
	esac
	rm -f "$FL_BOOT_DIR/firstrun.sh"
	sync
}

if [ -n "$FL_HOSTNAME" ]; then fl_step hostname fl_hostname; fi
if [ -n "$FL_USER" ]; then
	fl_step user fl_user
	if [ -n "$FL_AUTHORIZED_KEYS" ]; then fl_step ssh-keys fl_ssh_keys; fi
	fl_step enable-ssh fl_enable_ssh
fi
if [ -n "$FL_SSH_PASSWORD_AUTH" ]; then fl_step ssh-password-auth fl_sshd_password_auth; fi
if [ -n "$FL_WPA_SUPPLICANT_CONF" ]; then fl_step wifi fl_wifi; fi
if [ -n "$FL_TIMEZONE" ]; then fl_step timezone fl_timezone; fi
if [ -n "$FL_KEYBOARD_FILE" ]; then fl_step keyboard fl_keyboard; fi
if [ -n "$FL_LOCALE" ]; then fl_step locale fl_locale; fi
if [ "$FL_KEEP_HOST_KEYS" = yes ]; then fl_step host-keys fl_host_keys; fi
fl_step cleanup fl_cleanup
echo "flash-live firstrun.sh finished; failed steps:${fl_failed:- none}"
cat "$FL_RUN_LOG" >>"$FL_LOG"
cat "$FL_RUN_LOG" >&3
exit 0

# shellcheck shell=sh
# Shared by firstrun.sh and cloud-init's bootcmd (there run as `sh -c "$this; take_over_user \"\$1\"" sh NAME`).
# Values arrive as arguments, never spliced into this text.

# Replace the account name $2 by $3 in file $1 where it stands as a whole word (sudoers, lightdm,
# getty autologin). awk reads the names from the environment so no character in them is special.
fl_rename_in_file() {
	[ -f "$1" ] || return 0
	grep -qF -- "$2" "$1" || return 0
	FL_OLD=$2 FL_NEW=$3 awk '
		function isname(c) { return c ~ /[A-Za-z0-9_.-]/ }
		BEGIN { old = ENVIRON["FL_OLD"]; new = ENVIRON["FL_NEW"] }
		{
			line = $0; out = ""
			while ((i = index(line, old)) > 0) {
				before = i > 1 ? substr(line, i - 1, 1) : substr(out, length(out), 1)
				after = substr(line, i + length(old), 1)
				if (!isname(before) && !isname(after)) out = out substr(line, 1, i - 1) new
				else out = out substr(line, 1, i - 1 + length(old))
				line = substr(line, i + length(old))
			}
			print out line
		}' "$1" >"$1.flash-live.tmp" && cat "$1.flash-live.tmp" >"$1"
	rm -f "$1.flash-live.tmp"
}

# Make $1 the image's admin account, as Raspberry Pi Imager does: rename the first user (UID 1000)
# with its home, group and sudo/autologin entries; on an image without one, create it with sudo
# (unless $2 is --no-create: cloud-init creates it from its users: list). Idempotent: cloud-init
# runs bootcmd on every boot.
take_over_user() {
	fl_new=$1
	fl_old=$(getent passwd 1000 | cut -d: -f1)
	if [ -z "$fl_old" ]; then
		[ "${2:-}" = --no-create ] && return 0
		if ! getent passwd "$fl_new" >/dev/null; then
			useradd -m -s /bin/bash -U "$fl_new" || return 1
		fi
		if getent group sudo >/dev/null; then usermod -a -G sudo "$fl_new"; fi
		return 0
	fi
	[ "$fl_old" = "$fl_new" ] && return 0
	if getent passwd "$fl_new" >/dev/null; then
		echo "flash-live: account $fl_new exists already; $fl_old (UID 1000) is left as it is" >&2
		return 1
	fi
	fl_oldhome=$(getent passwd "$fl_old" | cut -d: -f6)
	usermod -l "$fl_new" "$fl_old" || return 1
	if [ "$fl_oldhome" = "/home/$fl_old" ]; then usermod -m -d "/home/$fl_new" "$fl_new"; fi
	if getent group "$fl_old" >/dev/null && ! getent group "$fl_new" >/dev/null; then groupmod -n "$fl_new" "$fl_old"; fi
	for fl_f in /etc/sudoers.d/* /etc/lightdm/lightdm.conf /etc/systemd/system/getty@tty1.service.d/autologin.conf; do
		fl_rename_in_file "$fl_f" "$fl_old" "$fl_new"
	done
	# Raspberry Pi OS gives the unconfigured first user a nologin shell until its setup wizard ran.
	case $(getent passwd "$fl_new" | cut -d: -f7) in
	*/nologin | */false) usermod -s /bin/bash "$fl_new" ;;
	esac
	return 0
}

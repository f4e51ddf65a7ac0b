# shellcheck shell=sh
# cloud-init's bootcmd runs this once (`sh -c "$this; private_boot MOUNTPOINT..." sh`): the seed
# files on the FAT boot partition hold the password hash and the Wi-Fi PSK, and a FAT has no
# per-file modes, only the mount's fmask/dmask (0022 by default: world-readable).

# Print fstab $1 with fmask=0077,dmask=0077 in the options of the line(s) mounting $2; other lines,
# comments and a missing line leave it as it was. Field 4 may be absent (= defaults).
fl_fstab_private() {
	FL_MP=$2 awk '
		BEGIN { mp = ENVIRON["FL_MP"]; OFS = "\t" }
		/^[ \t]*#/ || NF < 3 || $2 != mp { print; next }
		{ $4 = fl_private(NF >= 4 ? $4 : "defaults"); print }
		'"$(fl_awk_private)" "$1"
}

# An awk function: mount options with any fmask/dmask/umask replaced by root-only masks.
fl_awk_private() {
	cat <<-'EOF'
		function fl_private(opts,   o, n, i, out) {
			n = split(opts, o, ",")
			out = ""
			for (i = 1; i <= n; i++) if (o[i] != "" && o[i] !~ /^(fmask|dmask|umask)=/) out = out o[i] ","
			return out "fmask=0077,dmask=0077"
		}
	EOF
}

# "DEVICE OPTIONS" of the FAT mounted at $1 (nothing when none is).
fl_fat_mount() {
	FL_MP=$1 awk '
		BEGIN { mp = ENVIRON["FL_MP"] }
		$2 == mp && ($3 == "vfat" || $3 == "msdos") { dev = $1; opts = $4 }
		END { if (dev != "") print dev, opts }' /proc/self/mounts
}

# Make the FAT boot partition root-only, now and at every later boot. $@: the mount points to look
# at, in order; the first FAT mounted there that holds user-data is the one (else the first FAT
# mount point in fstab, when cloud-init ran before it was mounted). Its fstab line gets the masks;
# then it is mounted again, since vfat keeps the masks of the first mount on a remount.
private_boot() {
	mp=
	for d in "$@"; do
		if [ -n "$(fl_fat_mount "$d")" ] && [ -e "$d/user-data" ]; then mp=$d; break; fi
	done
	if [ -z "$mp" ]; then
		for d in "$@"; do
			if [ -f /etc/fstab ] && FL_MP=$d awk 'BEGIN { mp = ENVIRON["FL_MP"] } !/^[ \t]*#/ && $2 == mp && ($3 == "vfat" || $3 == "msdos") { f = 1 } END { exit !f }' /etc/fstab; then
				mp=$d
				break
			fi
		done
	fi
	if [ -z "$mp" ]; then
		echo "flash-live: no FAT boot partition at $* (mounted with user-data, or in /etc/fstab): its permissions are unchanged" >&2
		return 0
	fi

	if [ -f /etc/fstab ]; then
		if ! { fl_fstab_private /etc/fstab "$mp" >/etc/fstab.flash-live.tmp && chmod 644 /etc/fstab.flash-live.tmp && mv -f /etc/fstab.flash-live.tmp /etc/fstab; }; then
			rm -f /etc/fstab.flash-live.tmp
			return 1
		fi
		# As cloud-init's mounts module does after it edits fstab: systemd's mount units follow it.
		if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
	fi

	cur=$(fl_fat_mount "$mp")
	if [ -z "$cur" ]; then
		# Not mounted yet (cloud-init can run before local-fs.target): let the fstab line do it.
		if [ -d /run/systemd/system ]; then
			systemctl start "$(systemd-escape -p --suffix=mount "$mp")" || mount "$mp" || return 1
		else
			mount "$mp" || return 1
		fi
		cur=$(fl_fat_mount "$mp")
		[ -n "$cur" ] || return 1
	fi
	case ${cur#* } in *fmask=0077*dmask=0077*) return 0 ;; esac
	dev=${cur%% *}
	opts=$(echo "${cur#* }" | awk "$(fl_awk_private)"'{ print fl_private($0) }')
	if umount "$mp"; then
		mount -t vfat -o "$opts" "$dev" "$mp" || { mount "$mp"; return 1; }
	else
		echo "flash-live: $mp is busy: it becomes root-only at the next boot" >&2
	fi
}

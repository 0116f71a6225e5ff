
# kib: appended to initramfs-tools' hook-functions while kib builds the
# initramfs, and only for the hook-functions whose sha256 kib knows
# (initramfsHookFunctionsSHA256). It redefines copy_file with the same
# arguments, results and return codes, but without a process for what the
# shell can tell itself: a target path that is already canonical, the
# usr-merge test of /bin (asked once), a directory that already exists, and
# a source path in which no component is a symlink. mkinitramfs copies some
# three thousand modules, each through copy_file, so these processes were
# half of its time. Wherever a fast path does not apply, the commands of the
# original run as before.
copy_file() {
	local type src target link_target src_canon kib_p kib_r

	type="${1}"
	src="${2}"
	target="${3:-$2}"

	[ -f "${src}" ] || return 2

	if [ -d "${DESTDIR}/${target}" ] || [ "${target%/}" != "$target" ]; then
		target="${target}/${src##*/}"
	fi

	# realpath -ms "/${target}": lexical, so a path with one leading slash
	# and no empty, "." or ".." component is its own canonical form.
	kib_p="/${target}"
	while [ "${kib_p#//}" != "${kib_p}" ]; do
		kib_p="${kib_p#/}"
	done
	case "${kib_p}" in
	/ | *//* | */./* | */../* | */. | */.. | */)
		target="$(realpath -ms "/${target}")" || return 2
		;;
	*)
		target="${kib_p}"
		;;
	esac

	case "${src}" in
	/bin/* | /lib* | /sbin/*)
		if [ -z "${kib_bin_link-}" ]; then
			kib_bin_link="$(readlink -f /bin)"
		fi
		[ "${kib_bin_link}" = /usr/bin ] && src="/usr${src}"
		;;
	esac
	case "${target}" in
	/bin/* | /lib* | /sbin/*) target="/usr${target}" ;;
	esac

	[ -e "${DESTDIR}/${target}" ] && return 1

	[ -d "${DESTDIR}/${target%/*}" ] || mkdir -p "${DESTDIR}/${target%/*}"

	# readlink -f and realpath -s of the source: both are the source itself
	# when it is absolute, lexically canonical and no component of it is a
	# symlink.
	src_canon=
	case "${src}" in
	*//* | */./* | */../* | */. | */.. | */) ;;
	/?*)
		src_canon="${src}"
		kib_p=
		kib_r="${src#/}"
		while :; do
			kib_p="${kib_p}/${kib_r%%/*}"
			if [ -h "${kib_p}" ]; then
				src_canon=
				break
			fi
			case "${kib_r}" in
			*/*) kib_r="${kib_r#*/}" ;;
			*) break ;;
			esac
		done
		;;
	esac
	if [ -n "${src_canon}" ]; then
		link_target="${src_canon}"
	else
		link_target="$(readlink -f "${src}")" || return $(($? + 1))
		src_canon="$(realpath -s "$src")"
	fi
	if [ "${link_target}" != "${src_canon}" ]; then
		src="${link_target}"

		case "${link_target}" in
		/bin/* | /lib* | /sbin/*) link_target="/usr${link_target}" ;;
		esac

		if [ "${link_target}" != "${target}" ]; then
			[ "${verbose?}" = "y" ] && echo "Adding ${type}-link ${target}"
			ln -rs "${DESTDIR}/${link_target}" "${DESTDIR}/${target}"
		fi

		target="${link_target}"
		[ -e "${DESTDIR}/${target}" ] && return 0
		mkdir -p "${DESTDIR}/${target%/*}"
	fi

	[ "${verbose}" = "y" ] && echo "Adding ${type} ${src}"

	# Inside manual_add_modules, a file copied to its own path is copied
	# later, with the others, by one cp; an empty file holds its place, so
	# the test for a file already copied above still sees it.
	if [ -n "${kib_copies+set}" ] && [ "${src}" = "${target}" ]; then
		case "${src}" in
		*"
"*) ;;
		*)
			: > "${DESTDIR}/${target}" || return 2
			kib_copies="${kib_copies}${src}
"
			return 0
			;;
		esac
	fi

	cp -pP "${src}" "${DESTDIR}/${target}" || return $(($? + 1))
}

# kib_copy_now copies the files copy_file put off, each to its own path
# under DESTDIR, as cp -pP would have one by one.
kib_copy_now() {
	[ -n "${kib_copies}" ] || return 0
	printf '%s' "${kib_copies}" | xargs -d '\n' cp -pP --parents -t "${DESTDIR}" && return 0
	echo "E: kib: copying modules to ${DESTDIR} failed" >&2
	return 1
}

# manual_add_modules, redefined with the same results: the modules are
# copied by one cp at the end (see copy_file), and modinfo, which names the
# firmware each module may need, runs only when there is a firmware
# directory to take firmware from. Without one no firmware can be added, and
# the warnings skipped would name the modules the build host has loaded,
# which say nothing about the image.
manual_add_modules()
{
	local prefix kmod options firmware kib_fw kib_d

	if [ $# -eq 0 ]; then
		return
	fi

	kib_fw=
	for kib_d in /lib/firmware /usr/lib/firmware "${DESTDIR}/lib/firmware" "${DESTDIR}/usr/lib/firmware"; do
		[ -d "${kib_d}" ] && kib_fw=y
	done

	# As in the original: once with --ignore-install, once without, for
	# the softdeps the first run does not show.
	{ /sbin/modprobe --all --set-version="${version?}" --ignore-install --quiet --show-depends "$@";
	  /sbin/modprobe --all --set-version="${version}" --quiet --show-depends "$@"; } |
	{
	kib_copies=
	while read -r prefix kmod options ; do
		if [ "${prefix}" != "insmod" ]; then
			continue
		fi

		copy_file module "${kmod}" || continue

		[ -n "${kib_fw}" ] || continue
		for firmware in $(modinfo -k "${version}" -F firmware "${kmod}"); do
			if ! add_firmware "$firmware"; then
				if [ ! -e /proc/modules ] ; then
					continue
				fi

				kmod_modname="${kmod##*/}"
				kmod_modname="${kmod_modname%%.*}"
				if grep -q "^$kmod_modname\\>" /proc/modules "${CONFDIR}/modules"; then
					echo "W: Possible missing firmware /lib/firmware/${firmware} for module ${kmod_modname}" >&2
				fi
				continue
			fi
		done
	done
	kib_copy_now
	}
}

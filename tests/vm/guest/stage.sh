#!/bin/bash
# One guest boot's worth of tests (tests/vm/test_vm.py runs it as root in a fresh guest):
#   1. the project's suite as root (its root and rootless cases) + tests/vm/guest_tests as root
#   2. tests/vm/guest_tests as envboxtest in a login session (su -l: pam_systemd registers a
#      logind session; the lingering user@1000.service is its user manager)
#   3. fail-closed: a user manager with only pids delegated; a memory limit must be refused
# Each part writes /mnt/io/junit-*.xml or marked lines; the host asserts on them.
#   stage.sh MARK 'TEST PATHS' [PARTS...]     PARTS: root user pidsonly (default: all three)
set -u
mark=$1; paths=$2; shift 2
parts=${*:-root user pidsonly}
io=/mnt/io
uid=$(id -u envboxtest)
for part in $parts; do
    start=$(cut -d' ' -f1 /proc/uptime)
    echo "=== stage $part"
    case $part in
    root)
        # shellcheck disable=SC2086 # paths is a list
        tests/run -q -m "$mark" -rs --junitxml=$io/junit-root.xml $paths 2>&1 | tail -n 80
        ;;
    user)
        [ -x /opt/envbox-test/bin/python ] || tests/run --install-only
        XDG_SESSION_CLASS=user XDG_SESSION_TYPE=tty su -l envboxtest -c "set -a; . /run/envbox-vm.env; set +a
            echo session: \$XDG_RUNTIME_DIR \$DBUS_SESSION_BUS_ADDRESS \$(grep '^0::' /proc/self/cgroup)
            cd /srv/envbox && /opt/envbox-test/bin/python -m pytest -p no:cacheprovider -q -rs tests/vm/guest_tests \
                --junitxml=$io/junit-user.xml" < /dev/null 2>&1 | tail -n 400
        ;;
    pidsonly)
        [ -x /opt/envbox-test/bin/python ] || tests/run --install-only
        # Delegate=pids alone is not enough: the user's slice enables memory for its other
        # members' accounting, and user@.service then has it anyway. Memory accounting off
        # everywhere leaves the user manager with pids only (checked in the output).
        mkdir -p /etc/systemd/system.conf.d /etc/systemd/system/user@.service.d /etc/systemd/system/user-.slice.d
        printf '[Manager]\nDefaultMemoryAccounting=no\n' > /etc/systemd/system.conf.d/envbox-pids-only.conf
        printf '[Service]\nDelegate=\nDelegate=pids\nMemoryAccounting=no\n' > /etc/systemd/system/user@.service.d/pids-only.conf
        printf '[Slice]\nMemoryAccounting=no\n' > /etc/systemd/system/user-.slice.d/envbox-pids-only.conf
        systemctl daemon-reexec && systemctl restart user@$uid.service
        XDG_SESSION_CLASS=user XDG_SESSION_TYPE=tty su -l envboxtest -c '
            export XDG_CONFIG_HOME=$(mktemp -d) XDG_DATA_HOME=$(mktemp -d) XDG_CACHE_HOME=$(mktemp -d)
            mkdir -p $XDG_CONFIG_HOME/envbox/profiles
            printf "command: [sh, -c, \"echo ran\"]\nlimits: {memory: 64M, pids: 64}\n" > $XDG_CONFIG_HOME/envbox/profiles/capped.yaml
            echo "delegated: $(cat /sys/fs/cgroup/user.slice/user-$(id -u).slice/user@$(id -u).service/cgroup.controllers)"
            /opt/envbox-test/bin/envbox launch capped; echo "refused-rc=$?"
            /opt/envbox-test/bin/envbox launch --allow-unenforced capped; echo "override-rc=$?"
            echo "left: $(find /sys/fs/cgroup -name "envbox-*.scope" | wc -l)"' < /dev/null 2>&1
        rm /etc/systemd/system/user@.service.d/pids-only.conf /etc/systemd/system.conf.d/envbox-pids-only.conf \
            /etc/systemd/system/user-.slice.d/envbox-pids-only.conf
        systemctl daemon-reexec && systemctl restart user@$uid.service
        ;;
    esac
    echo "=== stage $part took $(python3 -c "print(round($(cut -d' ' -f1 /proc/uptime) - $start))") s"
done

# patchcycle staging health check (Linux), sent with AWS-RunShellScript after the patch install.
# The exit code decides: 0 passes, anything else fails the staging instance (its output is kept
# in the report). Add your application's own checks at the end.
set -eu
echo "kernel $(uname -r), up $(cut -d' ' -f1 /proc/uptime) s"
# No systemd unit may have failed since the install (a broken service after a library update).
if command -v systemctl >/dev/null 2>&1; then
  failed=$(systemctl list-units --state=failed --no-legend --plain | wc -l)
  if [ "$failed" -gt 0 ]; then
    systemctl list-units --state=failed --no-legend --plain
    echo "FAIL: $failed failed systemd unit(s)"; exit 1
  fi
fi
# The SSM Agent must still run, or production waves could not reach instances like this one.
if command -v systemctl >/dev/null 2>&1 && ! systemctl is-active --quiet amazon-ssm-agent snap.amazon-ssm-agent.amazon-ssm-agent 2>/dev/null; then
  echo "FAIL: amazon-ssm-agent is not active"; exit 1
fi
# The root file system must keep room to work.
used=$(df -P / | awk 'NR==2 {sub("%", "", $5); print $5}')
if [ "$used" -ge 95 ]; then echo "FAIL: / is ${used}% full"; exit 1; fi
echo "OK"

# patchcycle staging health check (Windows), sent with AWS-RunPowerShellScript after the patch install.
# The exit code decides: 0 passes, anything else fails the staging instance (its output is kept
# in the report). Add your application's own checks at the end.
$ErrorActionPreference = "Stop"
$os = Get-CimInstance Win32_OperatingSystem
Write-Output "$($os.Caption) build $($os.BuildNumber), booted $($os.LastBootUpTime)"
# Automatic services must be running again after the install (and any reboot).
$stopped = Get-Service | Where-Object { $_.StartType -eq "Automatic" -and $_.Status -ne "Running" -and $_.Name -notmatch "^(gupdate|MapsBroker|sppsvc|RemoteRegistry|edgeupdate|wuauserv)" }
if ($stopped) { $stopped | Format-Table -AutoSize | Out-String | Write-Output; Write-Output "FAIL: automatic services stopped"; exit 1 }
# The SSM Agent must still run, or production waves could not reach instances like this one.
if ((Get-Service AmazonSSMAgent).Status -ne "Running") { Write-Output "FAIL: AmazonSSMAgent is not running"; exit 1 }
$disk = Get-CimInstance Win32_LogicalDisk -Filter "DeviceID='C:'"
if ($disk.FreeSpace / $disk.Size -lt 0.05) { Write-Output "FAIL: C: has less than 5% free"; exit 1 }
Write-Output "OK"
exit 0

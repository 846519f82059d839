# winstor-probe: os-info v1
# The OS build as the kubelet derives its node.kubernetes.io/windows-build
# label (registry CurrentMajorVersionNumber.CurrentMinorVersionNumber.CurrentBuildNumber),
# the full version with the update revision (UBR), the DNS host name and PowerShell.
# Inside a process-isolated container the registry is the image's, whose build
# must equal the host's. Parameters: none.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'os-info'

try {
    $key = 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion'
    if (Test-Path -LiteralPath $key) {
        $current = Get-ItemProperty -LiteralPath $key
        $build = '{0}.{1}.{2}' -f $current.CurrentMajorVersionNumber, $current.CurrentMinorVersionNumber, $current.CurrentBuildNumber
        $revision = $current.UBR
    } else {
        $os = [System.Environment]::OSVersion.Version
        $build = '{0}.{1}.{2}' -f $os.Major, $os.Minor, $os.Build
        $revision = $os.Revision
    }
    $version = $build
    if ($null -ne $revision) {
        $version = '{0}.{1}' -f $build, $revision
    }
    $data = [ordered]@{
        build = $build
        version = $version
        hostname = [System.Net.Dns]::GetHostName()
        powershell = $PSVersionTable.PSVersion.ToString()
        edition = [string]$PSVersionTable.PSEdition
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}

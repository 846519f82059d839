# winstor-probe: os-info v1
# The OS build as the kubelet derives its node.kubernetes.io/windows-build
# label (registry CurrentMajorVersionNumber.CurrentMinorVersionNumber.CurrentBuildNumber),
# the full version with the update revision (UBR), the DNS host name and PowerShell.
# Inside a process-isolated container the registry is the image's, whose build
# must equal the host's. Parameters: none.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'os-info'

function Write-ProbeJson {
    param($Object)
    $json = ConvertTo-Json -InputObject $Object -Compress -Depth 10
    # The console code page would mangle non-ASCII text: escape it as JSON \uXXXX.
    $escape = [System.Text.RegularExpressions.MatchEvaluator] {
        param($match)
        '\u{0:x4}' -f [int][char]$match.Value
    }
    [Console]::Out.WriteLine([regex]::Replace($json, '[^\x00-\x7F]', $escape))
}

function Get-ErrorText {
    param($Record)
    $exception = $Record.Exception
    # .NET calls surface as "Exception calling ...": report the real cause.
    while ($exception -is [System.Management.Automation.MethodException] -and $null -ne $exception.InnerException) {
        $exception = $exception.InnerException
    }
    $exception.Message
}

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

# winstor-probe: read-marker v1
# Reads back what write-marker left in a directory. A missing file is an
# answer, not a failure: *_exists says whether each file is there.
# Parameters: path (directory).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'read-marker'

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

function Get-Sha256Hex {
    param([byte[]]$Bytes)
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try {
        $hash = $sha.ComputeHash($Bytes)
    } finally {
        $sha.Dispose()
    }
    ([System.BitConverter]::ToString($hash) -replace '-', '').ToLowerInvariant()
}

try {
    $dir = [string]$WinstorParams.path
    if ([string]::IsNullOrEmpty($dir)) {
        throw "parameter 'path' is required"
    }
    $markerPath = [System.IO.Path]::Combine($dir, 'winstor-marker.txt')
    $payloadPath = [System.IO.Path]::Combine($dir, 'winstor-payload.bin')
    $data = [ordered]@{
        marker_exists = $false
        marker = $null
        payload_exists = $false
        sha256 = $null
        bytes = $null
    }
    if ([System.IO.File]::Exists($markerPath)) {
        $data.marker_exists = $true
        $data.marker = [System.IO.File]::ReadAllText($markerPath)
    }
    if ([System.IO.File]::Exists($payloadPath)) {
        $payload = [System.IO.File]::ReadAllBytes($payloadPath)
        $data.payload_exists = $true
        $data.sha256 = Get-Sha256Hex -Bytes $payload
        $data.bytes = $payload.Length
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}

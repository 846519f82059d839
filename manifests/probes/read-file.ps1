# winstor-probe: read-file v1
# Reads a text file (encoding from its BOM, UTF-8 otherwise). A missing file
# is an answer, not a failure: exists is false.
# Parameters: path (file).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'read-file'

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
    $path = [string]$WinstorParams.path
    if ([string]::IsNullOrEmpty($path)) {
        throw "parameter 'path' is required"
    }
    $data = [ordered]@{
        path = $path
        exists = $false
        content = $null
        sha256 = $null
        bytes = $null
    }
    if ([System.IO.File]::Exists($path)) {
        $raw = [System.IO.File]::ReadAllBytes($path)
        $data.exists = $true
        $data.content = [System.IO.File]::ReadAllText($path)
        $data.sha256 = Get-Sha256Hex -Bytes $raw
        $data.bytes = $raw.Length
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}

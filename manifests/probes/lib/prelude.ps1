# Shared by every probe: the runner puts this after the parameters and before
# the probe's own body (see winstor.probes.build_script). Functions only.

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

# winstor-probe: list-dir v1
# Lists a directory (hidden entries included, as .NET sees them), sorted by
# name ignoring case. A missing directory is an answer: exists is false.
# Parameters: path (directory).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'list-dir'

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
    $dir = [string]$WinstorParams.path
    if ([string]::IsNullOrEmpty($dir)) {
        throw "parameter 'path' is required"
    }
    $info = New-Object System.IO.DirectoryInfo -ArgumentList $dir
    $entries = New-Object System.Collections.ArrayList
    $exists = $info.Exists
    if ($exists) {
        $items = @($info.GetFileSystemInfos())
        $names = [string[]]@($items | ForEach-Object { $_.Name })
        [Array]::Sort($names, $items, [System.StringComparer]::OrdinalIgnoreCase)
        foreach ($item in $items) {
            $entry = [ordered]@{
                name = [string]$item.Name
                type = 'File'
                length = $null
            }
            if ($item -is [System.IO.DirectoryInfo]) {
                $entry.type = 'Directory'
            } else {
                $entry.length = $item.Length
            }
            [void]$entries.Add($entry)
        }
    }
    $data = [ordered]@{
        path = $dir
        exists = $exists
        entries = $entries
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}

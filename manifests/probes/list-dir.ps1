# winstor-probe: list-dir v1
# Lists a directory (hidden entries included, as .NET sees them), sorted by
# name ignoring case. A missing directory is an answer: exists is false.
# Parameters: path (directory).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'list-dir'

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

# winstor-probe: try-write v1
# Tries to write a file (UTF-8 without BOM) and reports whether Windows let it.
# A refusal is an answer, not a failure: the .NET exception, its Win32 error
# code and that code's system message (what cmd.exe prints, e.g. "Access is
# denied."). A write that succeeds is undone (the file is deleted again).
# Parameters: path (file), content (text).
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$probeName = 'try-write'

try {
    $path = [string]$WinstorParams.path
    if ([string]::IsNullOrEmpty($path)) {
        throw "parameter 'path' is required"
    }
    $content = [string]$WinstorParams.content
    $utf8 = New-Object System.Text.UTF8Encoding -ArgumentList $false
    $failure = $null
    try {
        [System.IO.File]::WriteAllText($path, $content, $utf8)
    } catch {
        $failure = $_.Exception
        while ($failure -is [System.Management.Automation.MethodException] -and $null -ne $failure.InnerException) {
            $failure = $failure.InnerException
        }
    }
    $data = [ordered]@{
        path = $path
        written = ($null -eq $failure)
        message = $null
        exception = $null
        win32_error = $null
        win32_message = $null
    }
    if ($null -eq $failure) {
        [System.IO.File]::Delete($path)
    } else {
        $data.message = $failure.Message
        $data.exception = $failure.GetType().Name
        $hresult = [int]$failure.HResult
        if (($hresult -band 0xFFFF0000) -eq 0x80070000) {
            $code = $hresult -band 0xFFFF
            $data.win32_error = $code
            $data.win32_message = (New-Object System.ComponentModel.Win32Exception -ArgumentList $code).Message
        }
    }
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $true; data = $data })
    exit 0
} catch {
    Write-ProbeJson ([ordered]@{ probe = $probeName; ok = $false; error = (Get-ErrorText $_) })
    exit 1
}

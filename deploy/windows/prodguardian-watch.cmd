@echo off
rem One `prodguardian watch` run, started every 5 minutes by the task install-task.cmd creates (docs\deploy.md).
rem Copy it to %LOCALAPPDATA%\prodguardian\ and set --service and --region. The secrets come from your
rem user environment variables (setx SLACK_WEBHOOK_URL ...), never from this file.
"%LOCALAPPDATA%\prodguardian\venv\Scripts\prodguardian.exe" watch --service emergence-app --region europe-west1 --freshness 15m --state "%LOCALAPPDATA%\prodguardian\state.sqlite" --channels "%LOCALAPPDATA%\prodguardian\channels.yaml" --quiet >>"%LOCALAPPDATA%\prodguardian\watch.log" 2>&1
rem The task's Last Run Result is the exit status: 0x0 OK, 0x1 DEGRADED, 0x2 CRITICAL, 0x3 could not check.
exit /b %ERRORLEVEL%

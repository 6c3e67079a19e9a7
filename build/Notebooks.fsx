/// The notebooks in the real .NET Interactive kernel: each notebooks/NAME.ipynb is executed by dotnet-repl (the
/// version pinned in .config/dotnet-tools.json) into artifacts/notebooks/NAME.ipynb; any cell error fails the run;
/// the executed notebook is exported with its outputs and charts to docs/notebooks/NAME.html.
module Notebooks

#r "nuget: Markdig, 1.6.0"

open System
open System.Diagnostics
open System.IO
open System.Net
open System.Text
open System.Text.Json
open Markdig

/// The errors an executed notebook records: (code cell number, text), in order.
let errors (executed: string) =
    use doc = JsonDocument.Parse(File.ReadAllText executed)
    [ let mutable code = 0
      for c in doc.RootElement.GetProperty("cells").EnumerateArray() do
        if c.GetProperty("cell_type").GetString() = "code" then
            code <- code + 1
            match c.TryGetProperty "outputs" with
            | true, outputs ->
                for o in outputs.EnumerateArray() do
                    let kind = o.GetProperty("output_type").GetString()
                    if kind = "error" then
                        let text name = match o.TryGetProperty(name: string) with | true, v when v.ValueKind = JsonValueKind.String -> v.GetString() | _ -> ""
                        yield code, sprintf "%s: %s" (text "ename") (text "evalue")
                    elif kind = "stream" && (match o.TryGetProperty "name" with | true, n -> n.GetString() = "stderr" | _ -> false) then
                        yield code, String.Join("", [ for l in o.GetProperty("text").EnumerateArray() -> l.GetString() ])
            | _ -> () ]

let private joined (e: JsonElement) =
    if e.ValueKind = JsonValueKind.Array then String.Join("", [ for l in e.EnumerateArray() -> l.GetString() ]) else e.GetString()

/// Writes an executed notebook as one HTML page: markdown rendered, code shown, outputs as the kernel gave them
/// (text/html as is, so the SVG charts show; text as preformatted text).
let export (executed: string) (title: string) (html: string) =
    use doc = JsonDocument.Parse(File.ReadAllText executed)
    let pipeline = Markdig.MarkdownPipelineBuilder().UseAdvancedExtensions().Build()
    let sb = StringBuilder()
    let add (s: string) = sb.Append(s) |> ignore
    add (sprintf "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>%s</title><style>" (WebUtility.HtmlEncode title))
    add "body{font-family:sans-serif;max-width:980px;margin:2em auto;line-height:1.45}pre{background:#f6f8fa;padding:.6em;overflow-x:auto}"
    add "pre.out{background:#fff;border-left:3px solid #ccc}pre.err{background:#fff0f0;border-left:3px solid #d00}.cell{margin:1em 0}"
    add "</style></head><body>"
    add (sprintf "<p><em>Executed in the .NET Interactive kernel (dotnet-repl) by <code>dotnet fsi build.fsx notebooks</code>; the source is notebooks/%s.ipynb.</em></p>" (WebUtility.HtmlEncode title))
    for c in doc.RootElement.GetProperty("cells").EnumerateArray() do
        let source = joined (c.GetProperty "source")
        match c.GetProperty("cell_type").GetString() with
        | "markdown" -> add (sprintf "<div class=\"cell\">%s</div>" (Markdig.Markdown.ToHtml(source, pipeline)))
        | "code" ->
            add (sprintf "<div class=\"cell\"><pre><code>%s</code></pre>" (WebUtility.HtmlEncode source))
            match c.TryGetProperty "outputs" with
            | true, outputs ->
                for o in outputs.EnumerateArray() do
                    match o.GetProperty("output_type").GetString() with
                    | "stream" -> add (sprintf "<pre class=\"out\">%s</pre>" (WebUtility.HtmlEncode(joined (o.GetProperty "text"))))
                    | "error" -> add (sprintf "<pre class=\"err\">%s: %s</pre>" (WebUtility.HtmlEncode(o.GetProperty("ename").GetString())) (WebUtility.HtmlEncode(o.GetProperty("evalue").GetString())))
                    | _ ->
                        match o.TryGetProperty "data" with
                        | true, data ->
                            match data.TryGetProperty "text/html" with
                            | true, h -> add (sprintf "<div class=\"out\">%s</div>" (joined h))
                            | _ ->
                                match data.TryGetProperty "text/plain" with
                                | true, t -> add (sprintf "<pre class=\"out\">%s</pre>" (WebUtility.HtmlEncode(joined t)))
                                | _ -> ()
                        | _ -> ()
            | _ -> ()
            add "</div>"
        | _ -> ()
    add "</body></html>\n"
    Directory.CreateDirectory(Path.GetDirectoryName html) |> ignore
    File.WriteAllText(html, sb.ToString())

/// The folder of libtorch's native libraries for LD_LIBRARY_PATH: the libtorch-cpu-linux-* package in the NuGet
/// cache (NUGET_PACKAGES, else ~/.nuget/packages), at the version src/Lookahead.Cli/packages.lock.json resolves,
/// which is the libtorch the notebooks' TorchSharp-cpu brings (the folder holds libtorch's libraries only). Why:
/// TorchSharp first loads libtorch_cpu by name; on a host with another libtorch on the default library path
/// (Debian's python3-torch installs libtorch 1.13 there) that name binds to the other one and LibTorchSharp then
/// fails with an undefined symbol. Putting this folder first makes the name resolve to the right libtorch.
/// None off Linux; on Linux a missing folder is reported (run a build first: it restores the package).
let torchNativeFolder (root: string) =
    if not (Runtime.InteropServices.RuntimeInformation.IsOSPlatform Runtime.InteropServices.OSPlatform.Linux) then None
    else
        let rid = if Runtime.InteropServices.RuntimeInformation.OSArchitecture = Runtime.InteropServices.Architecture.Arm64 then "linux-arm64" else "linux-x64"
        let package = "libtorch-cpu-" + rid
        let lockFile = Path.Combine(root, "src", "Lookahead.Cli", "packages.lock.json")
        let version =
            if not (File.Exists lockFile) then None
            else
                use doc = JsonDocument.Parse(File.ReadAllText lockFile)
                [ for framework in doc.RootElement.GetProperty("dependencies").EnumerateObject() do
                    match framework.Value.TryGetProperty package with
                    | true, entry -> yield entry.GetProperty("resolved").GetString()
                    | _ -> () ] |> List.tryHead
        let cache =
            match Environment.GetEnvironmentVariable "NUGET_PACKAGES" with
            | null | "" -> Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile, ".nuget", "packages")
            | folder -> folder
        match version with
        | None ->
            eprintfn "warning: %s has no %s entry; TorchSharp may bind another libtorch on this host" lockFile package
            None
        | Some v ->
            let folder = Path.Combine(cache, package, v, "runtimes", rid, "native")
            if File.Exists(Path.Combine(folder, "libtorch_cpu.so")) then Some folder
            else
                eprintfn "warning: %s not found (restore or build first); TorchSharp may bind another libtorch on this host" folder
                None

/// Puts `torchNativeFolder` first on a child process's LD_LIBRARY_PATH (see there why).
let withTorchNatives (root: string) (psi: ProcessStartInfo) =
    match torchNativeFolder root with
    | Some folder ->
        let existing = Environment.GetEnvironmentVariable "LD_LIBRARY_PATH"
        psi.Environment.["LD_LIBRARY_PATH"] <- (if String.IsNullOrEmpty existing then folder else folder + ":" + existing)
    | None -> ()
    psi

/// Executes one notebook in the kernel (its relative paths are relative to its folder), writing the executed copy
/// to `executed`; returns the kernel's exit code and the cells that failed (`errors`). Fails if nothing was written.
let execute (root: string) (notebook: string) (executed: string) =
    if File.Exists executed then File.Delete executed
    let psi = ProcessStartInfo("dotnet", sprintf "dotnet-repl --run \"%s\" --exit-after-run --output-format ipynb --output-path \"%s\"" notebook executed, WorkingDirectory = Path.GetDirectoryName notebook, UseShellExecute = false)
    use p = Process.Start(withTorchNatives root psi)
    p.WaitForExit()
    if not (File.Exists executed) then failwithf "notebook %s: the kernel wrote no executed notebook (exit code %d)" (Path.GetFileNameWithoutExtension notebook) p.ExitCode
    p.ExitCode, errors executed

/// The check that a failing cell is caught: a two-cell notebook whose second cell throws must be reported as failing
/// in cell 2 (and its first cell must not be), or the notebooks' run could not be trusted to fail.
let selfCheck (root: string) =
    // Inside the repository: the kernel is a local tool, found from the working folder through .config/.
    let dir = Path.Combine(root, "artifacts", sprintf "notebook-check-%d" (Random().Next()))
    Directory.CreateDirectory dir |> ignore
    try
        let notebook = Path.Combine(dir, "failing.ipynb")
        let cell (source: string) = sprintf "{\"cell_type\":\"code\",\"execution_count\":null,\"metadata\":{\"dotnet_interactive\":{\"language\":\"fsharp\"},\"polyglot_notebook\":{\"kernelName\":\"fsharp\"}},\"outputs\":[],\"source\":[%s]}" (JsonSerializer.Serialize source)
        File.WriteAllText(notebook, sprintf "{\"cells\":[%s,%s],\"metadata\":{\"kernelspec\":{\"display_name\":\".NET (F#)\",\"language\":\"F#\",\"name\":\".net-fsharp\"},\"language_info\":{\"name\":\"F#\"},\"polyglot_notebook\":{\"kernelInfo\":{\"defaultKernelName\":\"fsharp\",\"items\":[{\"aliases\":[],\"name\":\"fsharp\"}]}}},\"nbformat\":4,\"nbformat_minor\":5}" (cell "let answer = 6 * 7\nanswer") (cell "if answer = 42 then failwith \"a deliberate failure\""))
        match execute root notebook (Path.Combine(dir, "failing.executed.ipynb")) with
        | _, [ 2, text ] when text.Contains "a deliberate failure" -> printfn "notebook check: a failing cell is reported (cell 2: %s)" (text.Trim().Split([| '\n' |]).[0].Trim())
        | code, problems -> failwithf "notebook check: a notebook whose second cell throws was not reported as failing there (exit code %d, reported: %A)" code problems
    finally
        try Directory.Delete(dir, true) with _ -> ()

/// Executes every notebook of `folder` in the kernel, fails on a cell error, exports each; returns the seconds each took.
let runAll (root: string) =
    let folder = Path.Combine(root, "notebooks")
    let executedDir = Path.Combine(root, "artifacts", "notebooks")
    Directory.CreateDirectory executedDir |> ignore
    let restore = Process.Start(ProcessStartInfo("dotnet", "tool restore", WorkingDirectory = root, UseShellExecute = false))
    restore.WaitForExit()
    if restore.ExitCode <> 0 then failwithf "'dotnet tool restore' exited with %d" restore.ExitCode
    selfCheck root
    [ for notebook in Directory.GetFiles(folder, "*.ipynb") |> Array.sort do
        let name = Path.GetFileNameWithoutExtension notebook
        let executed = Path.Combine(executedDir, name + ".ipynb")
        printfn "running notebook %s in the .NET Interactive kernel" name
        let clock = Stopwatch.StartNew()
        let code, problems = execute root notebook executed
        let seconds = clock.Elapsed.TotalSeconds
        match problems with
        | [] when code = 0 -> ()
        | [] -> failwithf "notebook %s: the kernel exited with %d" name code
        | problems -> failwithf "notebook %s failed:\n%s" name (problems |> List.map (fun (k, t) -> sprintf "  code cell %d: %s" k t) |> String.concat "\n")
        export executed name (Path.Combine(root, "docs", "notebooks", name + ".html"))
        printfn "notebook %s: ran in the kernel in %.0f s, exported to docs/notebooks/%s.html" name seconds name
        yield name, seconds ]

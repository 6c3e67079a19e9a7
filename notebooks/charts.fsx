/// Line charts as SVG text for the notebooks, with no package behind them (Plotly.NET 6 needs FSharp.Core 10.1,
/// which cannot load beside the .NET Interactive kernel's own FSharp.Core). A notebook cell ends with
/// `|> Chart.svg |> HTML` and the kernel shows the chart; the exported HTML pages keep it.
module Charts

open System
open System.Globalization
open System.Text

/// One named line: x and y values of equal length (non-finite points are left out).
type Line = { Name: string; X: float[]; Y: float[] }

/// A chart: lines, axis titles, whether x is drawn on a log10 scale.
type Plot = { Lines: Line list; XTitle: string; YTitle: string; LogX: bool; Title: string }

/// Several charts side by side, in rows of `Columns`.
type Grid = { Plots: Plot list; Columns: int }

module Chart =
    let private palette = [| "#1f77b4"; "#ff7f0e"; "#2ca02c"; "#d62728"; "#9467bd"; "#8c564b"; "#e377c2"; "#7f7f7f"; "#bcbd22"; "#17becf" |]
    let private c (x: float) = x.ToString("0.##", CultureInfo.InvariantCulture)
    let private escape (s: string) = s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;")

    /// A line from x and y sequences.
    let line (name: string) (xs: seq<float>) (ys: seq<float>) = { Name = name; X = Array.ofSeq xs; Y = Array.ofSeq ys }
    /// A chart of lines with axis titles (linear x).
    let plot (xTitle: string) (yTitle: string) (lines: Line list) = { Lines = lines; XTitle = xTitle; YTitle = yTitle; LogX = false; Title = "" }
    /// The same chart with x on a log10 scale (x values must be positive).
    let logX (p: Plot) = { p with LogX = true }
    /// The same chart with a title.
    let titled (title: string) (p: Plot) = { p with Title = title }

    /// Round tick values covering [lo, hi].
    let private ticks (lo: float) (hi: float) =
        let span = if hi > lo then hi - lo else 1.0
        let raw = span / 5.0
        let magnitude = 10.0 ** floor (log10 raw)
        let step = [ 1.0; 2.0; 5.0; 10.0 ] |> List.map ((*) magnitude) |> List.find (fun s -> s >= raw)
        [ for k in ceil (lo / step) .. floor (hi / step) -> k * step ]

    /// The SVG markup of one chart, `width` × `height` pixels.
    let private render (width: int) (height: int) (p: Plot) =
        let fx x = if p.LogX then log10 x else x
        let points =
            [ for l in p.Lines ->
                l, Array.zip l.X l.Y |> Array.filter (fun (x, y) -> Double.IsFinite(fx x) && Double.IsFinite y) |> Array.map (fun (x, y) -> fx x, y) ]
        let all = points |> List.collect (snd >> List.ofArray)
        let x0, x1, y0, y1 =
            if all.IsEmpty then 0.0, 1.0, 0.0, 1.0
            else
                let xs, ys = List.map fst all, List.map snd all
                let pad lo hi = if hi > lo then lo, hi else lo - 0.5, hi + 0.5
                let a, b = pad (List.min xs) (List.max xs)
                let c', d = pad (List.min ys) (List.max ys)
                a, b, c', d
        let left, right, top, bottom = 62.0, 170.0, (if p.Title = "" then 12.0 else 30.0), 44.0
        let w, h = float width - left - right, float height - top - bottom
        let px x = left + (x - x0) / (x1 - x0) * w
        let py y = top + h - (y - y0) / (y1 - y0) * h
        let sb = StringBuilder()
        let add (s: string) = sb.Append(s) |> ignore
        add (sprintf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">" width height)
        add (sprintf "<rect x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"none\" stroke=\"#999\"/>" (c left) (c top) (c w) (c h))
        if p.Title <> "" then add (sprintf "<text x=\"%s\" y=\"18\" font-size=\"13\">%s</text>" (c left) (escape p.Title))
        for t in ticks x0 x1 do
            let label = if p.LogX then (10.0 ** t).ToString("g3", CultureInfo.InvariantCulture) else t.ToString("g4", CultureInfo.InvariantCulture)
            add (sprintf "<line x1=\"%s\" x2=\"%s\" y1=\"%s\" y2=\"%s\" stroke=\"#eee\"/>" (c (px t)) (c (px t)) (c top) (c (top + h)))
            add (sprintf "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>" (c (px t)) (c (top + h + 14.0)) label)
        for t in ticks y0 y1 do
            add (sprintf "<line x1=\"%s\" x2=\"%s\" y1=\"%s\" y2=\"%s\" stroke=\"#eee\"/>" (c left) (c (left + w)) (c (py t)) (c (py t)))
            add (sprintf "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>" (c (left - 4.0)) (c (py t + 4.0)) (t.ToString("g4", CultureInfo.InvariantCulture)))
        add (sprintf "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>" (c (left + w / 2.0)) (c (float height - 8.0)) (escape (p.XTitle + (if p.LogX then " (log scale)" else ""))))
        add (sprintf "<text transform=\"translate(14,%s) rotate(-90)\" text-anchor=\"middle\">%s</text>" (c (top + h / 2.0)) (escape p.YTitle))
        points |> List.iteri (fun i (l, pts) ->
            let colour = palette.[i % palette.Length]
            if pts.Length > 0 then
                let path = pts |> Array.map (fun (x, y) -> sprintf "%s,%s" (c (px x)) (c (py y))) |> String.concat " "
                add (sprintf "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"%s\"/>" colour path)
            let ly = top + 8.0 + 16.0 * float i
            add (sprintf "<line x1=\"%s\" x2=\"%s\" y1=\"%s\" y2=\"%s\" stroke=\"%s\" stroke-width=\"3\"/>" (c (left + w + 10.0)) (c (left + w + 28.0)) (c ly) (c ly) colour)
            add (sprintf "<text x=\"%s\" y=\"%s\">%s</text>" (c (left + w + 32.0)) (c (ly + 4.0)) (escape l.Name)))
        add "</svg>"
        sb.ToString()

    /// The chart as SVG markup (760 × 380).
    let svg (p: Plot) = render 760 380 p

    /// Charts in a grid, each 560 × 300, as one HTML block.
    let grid (columns: int) (plots: Plot list) =
        let cells = plots |> List.map (fun p -> sprintf "<div style=\"display:inline-block\">%s</div>" (render 560 300 p))
        cells |> List.chunkBySize columns |> List.map (String.concat "") |> List.map (sprintf "<div>%s</div>") |> String.concat ""

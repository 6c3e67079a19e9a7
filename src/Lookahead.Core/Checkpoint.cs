using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead;

/// <summary>A checkpoint that cannot be loaded: unreadable, corrupt, of another version, or made for another optimizer or other parameters.</summary>
public sealed class CheckpointException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Saving and loading an optimizer's full state: every tensor leaf by its path, every scalar leaf (step
/// counts, running sums), the transform's description (which includes its hyperparameters) and the
/// parameters' names, shapes, dtypes and values, in the safetensors layout (an 8-byte little-endian header
/// length, a JSON header, raw little-endian tensor bytes), readable by any safetensors reader.
/// </summary>
/// <remarks>
/// <para>Round trips are bit-exact. Loading validates everything before building anything: a truncated,
/// corrupt or other-version file, another transform, other parameter names or shapes, or another state
/// structure each raise a <see cref="CheckpointException"/> naming the mismatch, and nothing is half loaded.</para>
/// <para>Loaded tensors are placed on the device of the parameters passed to <see cref="Load(string, IGradientTransformation, TensorTree)"/>.</para>
/// </remarks>
public static class Checkpoint
{
    /// <summary>The format name written to the header.</summary>
    public const string Format = "lookahead-checkpoint";

    /// <summary>
    /// The format version this library writes and reads. Version 2 stores the transform's <see cref="Spec"/>
    /// and fingerprint; version 1 files (which identified the optimizer by a culture-dependent name that omitted
    /// some hyperparameters) are refused with a message saying so.
    /// </summary>
    public const int Version = 2;

    static readonly Dictionary<ScalarType, (string Code, int Size)> Dtypes = new()
    {
        [ScalarType.Float64] = ("F64", 8), [ScalarType.Float32] = ("F32", 4), [ScalarType.Int64] = ("I64", 8), [ScalarType.Int32] = ("I32", 4),
        [ScalarType.BFloat16] = ("BF16", 2), [ScalarType.Float16] = ("F16", 2),
    };

    static string R(double x) => x.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Writes <paramref name="state"/> of <paramref name="transform"/> for <paramref name="parameters"/> to <paramref name="path"/> (replacing it atomically).</summary>
    /// <param name="path">The file.</param>
    /// <param name="transform">The optimizer (its description, with its hyperparameters, is stored and checked on load).</param>
    /// <param name="state">Its state.</param>
    /// <param name="parameters">The parameters (names, shapes, values).</param>
    /// <param name="metadata">Extra string entries for the header (e.g. a TorchSharp adapter's learning rates); read with <see cref="ReadMetadata"/>.</param>
    public static void Save(string path, IGradientTransformation transform, IOptState state, TensorTree parameters, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(transform);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(parameters);
        var spec = transform.Spec;
        var tensors = new List<(string Key, Tensor T)>();
        foreach (var (name, t) in parameters) tensors.Add(("parameters/" + name, t));
        var scalars = new JsonObject();
        foreach (var leaf in state.Leaves())
        {
            if (leaf.Tensor is { } t) tensors.Add(("state/" + leaf.Path, t));
            else scalars[leaf.Path] = R(leaf.Scalar!.Value);
        }
        var duplicate = tensors.GroupBy(x => x.Key).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"two leaves share the path '{duplicate.Key}'", nameof(state));

        var header = new JsonObject
        {
            ["__metadata__"] = new JsonObject
            {
                ["format"] = Format,
                ["version"] = Version.ToString(CultureInfo.InvariantCulture),
                ["transform"] = transform.Name,
                ["spec"] = spec.Canonical,
                ["fingerprint"] = spec.Fingerprint,
                ["scalars"] = scalars.ToJsonString(),
                ["parameters"] = new JsonArray(parameters.Names.Select(n => (JsonNode)n).ToArray()).ToJsonString(),
                ["user"] = new JsonObject((metadata ?? new Dictionary<string, string>()).Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))).ToJsonString(),
            },
        };
        var blobs = new List<byte[]>();
        long offset = 0;
        foreach (var (key, t) in tensors)
        {
            if (!Dtypes.TryGetValue(t.dtype, out var d)) throw new ArgumentException($"tensor '{key}' has dtype {t.dtype}; checkpoints store float64, float32, bfloat16, float16, int64 and int32");
            var bytes = Bytes(t);
            header[key] = new JsonObject
            {
                ["dtype"] = d.Code,
                ["shape"] = new JsonArray(t.shape.Select(x => (JsonNode)x).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes.Length),
            };
            blobs.Add(bytes);
            offset += bytes.Length;
        }
        var metadataNode = header["__metadata__"]!.AsObject();
        var entriesForDigest = tensors.Select((x, k) => (x.Key, Dtypes[x.T.dtype].Code, x.T.shape, Offsets: (Begin: blobs.Take(k).Sum(b => (long)b.Length), End: blobs.Take(k + 1).Sum(b => (long)b.Length))));
        metadataNode["sha256"] = Digest(
            (string)metadataNode["transform"]! + "\n" + (string)metadataNode["spec"]! + "\n" + (string)metadataNode["fingerprint"]!, (string)metadataNode["scalars"]!, (string)metadataNode["parameters"]!, (string)metadataNode["user"]!,
            entriesForDigest.Select(e => (e.Key, e.Code, e.shape, e.Offsets.Begin, e.Offsets.End)), blobs);
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int pad = (8 - json.Length % 8) % 8;
        var tmp = path + ".tmp";
        using (var f = File.Create(tmp))
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)(json.Length + pad));
            f.Write(len);
            f.Write(json);
            for (int i = 0; i < pad; i++) f.WriteByte((byte)' ');
            foreach (var b in blobs) f.Write(b);
        }
        File.Move(tmp, path, overwrite: true);
    }

    static byte[] Bytes(Tensor t)
    {
        using var cpu = t.detach().cpu().contiguous();
        return t.dtype switch
        {
            ScalarType.Float64 => MemoryMarshal.AsBytes(cpu.data<double>().ToArray().AsSpan()).ToArray(),
            ScalarType.Float32 => MemoryMarshal.AsBytes(cpu.data<float>().ToArray().AsSpan()).ToArray(),
            ScalarType.Int64 => MemoryMarshal.AsBytes(cpu.data<long>().ToArray().AsSpan()).ToArray(),
            ScalarType.Int32 => MemoryMarshal.AsBytes(cpu.data<int>().ToArray().AsSpan()).ToArray(),
            ScalarType.BFloat16 or ScalarType.Float16 => RawBytes(cpu),
            _ => throw new ArgumentException($"checkpoints store float64, float32, bfloat16, float16, int64 and int32 tensors, not {t.dtype}"),
        };
    }

    /// <summary>The bytes of a contiguous CPU tensor of 16-bit floats (their bit patterns, little-endian on every host .NET runs).</summary>
    static byte[] RawBytes(Tensor cpu)
    {
        var bytes = new byte[cpu.numel() * 2];
        if (bytes.Length == 0) return bytes;
        var p = Kernels.NarrowFloats.DataPointer(cpu);
        if (p == IntPtr.Zero) throw new InvalidOperationException($"cannot read the data of a {cpu.dtype} tensor on this host");
        Marshal.Copy(p, bytes, 0, bytes.Length);
        return bytes;
    }

    sealed record Entry(string Key, string Dtype, long[] Shape, long Begin, long End);

    /// <summary>SHA-256 over everything a load uses: the metadata strings, every entry's name, dtype, shape and offsets, and the tensor bytes.</summary>
    static string Digest(string transform, string scalars, string parameters, string user, IEnumerable<(string Key, string Dtype, long[] Shape, long Begin, long End)> entries, IEnumerable<byte[]> data)
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        var text = new StringBuilder().Append(transform).Append('\n').Append(scalars).Append('\n').Append(parameters).Append('\n').Append(user).Append('\n');
        foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.Key, StringComparer.Ordinal))
            text.Append(e.Key).Append('|').Append(e.Dtype).Append('|').Append(string.Join(",", e.Shape)).Append('|').Append(e.Begin).Append('|').Append(e.End).Append('\n');
        sha.AppendData(Encoding.UTF8.GetBytes(text.ToString()));
        foreach (var d in data) sha.AppendData(d);
        return Convert.ToHexString(sha.GetHashAndReset());
    }

    /// <summary>
    /// Reads the state saved for <paramref name="transform"/> and <paramref name="parameters"/>: the state has
    /// the structure <c>transform.Init(parameters)</c> gives, with the saved values. Throws a
    /// <see cref="CheckpointException"/> naming what does not match.
    /// </summary>
    public static IOptState Load(string path, IGradientTransformation transform, TensorTree parameters) => Load(path, transform, parameters, null);

    /// <summary>
    /// <see cref="Load(string, IGradientTransformation, TensorTree)"/> with the state's structure and dtypes taken from
    /// <paramref name="like"/> (a runner's state: float32 for 16-bit parameters under <see cref="StatePrecision.Float32"/>)
    /// instead of <c>transform.Init(parameters)</c>; <paramref name="like"/> is not changed.
    /// </summary>
    internal static IOptState Load(string path, IGradientTransformation transform, TensorTree parameters, IOptState? like)
    {
        ArgumentNullException.ThrowIfNull(transform);
        ArgumentNullException.ThrowIfNull(parameters);
        var (meta, entries, data) = Read(path);
        var spec = transform.Spec;
        if (meta.Fingerprint != spec.Fingerprint)
            throw new CheckpointException($"{path}: saved for another optimizer or other hyperparameters: {Mismatch(meta.Spec, spec)}");
        if (!meta.Parameters.OrderBy(n => n, StringComparer.Ordinal).SequenceEqual(parameters.Names.OrderBy(n => n, StringComparer.Ordinal)))
            throw new CheckpointException($"{path}: saved for the parameters [{string.Join(", ", meta.Parameters)}], not [{string.Join(", ", parameters.Names)}]");
        foreach (var (name, p) in parameters)
        {
            if (!Dtypes.ContainsKey(p.dtype)) throw new CheckpointException($"parameter '{name}' has dtype {p.dtype}; checkpoints store float64, float32, bfloat16, float16, int64 and int32");
            var e = entries.GetValueOrDefault("parameters/" + name) ?? throw new CheckpointException($"{path}: parameter '{name}' is missing from the file");
            if (!e.Shape.SequenceEqual(p.shape) || e.Dtype != Dtypes[p.dtype].Code)
                throw new CheckpointException($"{path}: parameter '{name}' was saved as {e.Dtype} [{string.Join(", ", e.Shape)}], here it is {Dtypes[p.dtype].Code} [{string.Join(", ", p.shape)}]");
        }

        using var scope = NewDisposeScope();
        var template = like ?? transform.Init(parameters);
        var tensorLeaves = template.Leaves().Where(l => l.Tensor is not null).ToDictionary(l => l.Path, l => l.Tensor!);
        var scalarLeaves = template.Leaves().Where(l => l.Tensor is null).Select(l => l.Path).ToHashSet();
        var savedTensors = entries.Keys.Where(k => k.StartsWith("state/", StringComparison.Ordinal)).Select(k => k["state/".Length..]).ToHashSet();
        var missing = tensorLeaves.Keys.Where(k => !savedTensors.Contains(k)).ToArray();
        var extra = savedTensors.Where(k => !tensorLeaves.ContainsKey(k)).ToArray();
        if (missing.Length > 0 || extra.Length > 0)
            throw new CheckpointException($"{path}: the state's structure differs: missing [{string.Join(", ", missing)}], unexpected [{string.Join(", ", extra)}]");
        var missingScalars = scalarLeaves.Where(k => !meta.Scalars.ContainsKey(k)).ToArray();
        var extraScalars = meta.Scalars.Keys.Where(k => !scalarLeaves.Contains(k)).ToArray();
        if (missingScalars.Length > 0 || extraScalars.Length > 0)
            throw new CheckpointException($"{path}: the state's scalars differ: missing [{string.Join(", ", missingScalars)}], unexpected [{string.Join(", ", extraScalars)}]");

        var values = new Dictionary<string, Tensor>();
        foreach (var (leaf, t) in tensorLeaves)
        {
            var e = entries["state/" + leaf];
            if (!e.Shape.SequenceEqual(t.shape) || e.Dtype != Dtypes[t.dtype].Code)
                throw new CheckpointException($"{path}: state '{leaf}' was saved as {e.Dtype} [{string.Join(", ", e.Shape)}], this optimizer has {Dtypes[t.dtype].Code} [{string.Join(", ", t.shape)}]");
            values[leaf] = FromBytes(data, e, t.dtype).to(t.device);
        }
        var loaded = template.MapTensors((leaf, t) => values[leaf].clone()).MapScalars((leaf, _) => meta.Scalars[leaf]);
        scope.MoveToOuter(OptState.Tensors(loaded).Cast<IDisposable>());
        return loaded;
    }

    /// <summary>The parameter values stored in a checkpoint (new tensors on the CPU, owned by the caller).</summary>
    public static TensorTree LoadParameters(string path)
    {
        var (meta, entries, data) = Read(path);
        return TensorTree.Of(meta.Parameters, meta.Parameters.Select(n =>
        {
            var e = entries.GetValueOrDefault("parameters/" + n) ?? throw new CheckpointException($"{path}: parameter '{n}' is missing from the file");
            var dtype = Dtypes.First(kv => kv.Value.Code == e.Dtype).Key;
            return FromBytes(data, e, dtype);
        }).ToArray());
    }

    /// <summary>The extra entries <see cref="Save"/> was given (validated like the rest of the file).</summary>
    public static IReadOnlyDictionary<string, string> ReadMetadata(string path) => Read(path).Item1.User;

    /// <summary>The hyperparameters on which the saved spec and this transform's spec differ, each with its path and both values.</summary>
    static string Mismatch(Spec saved, Spec current)
    {
        var differences = saved.Differences(current);
        if (differences.Count == 0) return "the specs print alike but their fingerprints differ";
        const int shown = 5;
        var text = string.Join("; ", differences.Take(shown).Select(d => $"'{d.Path}' was {d.First} when saved, here it is {d.Second}"));
        return differences.Count > shown ? text + $"; and {differences.Count - shown} more" : text;
    }

    sealed record Meta(string Transform, Spec Spec, string Fingerprint, Dictionary<string, double> Scalars, string[] Parameters, Dictionary<string, string> User);

    static (Meta, Dictionary<string, Entry>, byte[]) Read(string path)
    {
        byte[] file;
        try { file = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new CheckpointException($"{path}: cannot read: {e.Message}", e); }
        if (file.Length < 8) throw new CheckpointException($"{path}: truncated ({file.Length} bytes; the header length alone takes 8)");
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        if (n < 2 || n > (ulong)(file.Length - 8)) throw new CheckpointException($"{path}: corrupt or truncated (a header of {n} bytes does not fit in {file.Length - 8})");
        JsonObject header;
        try { header = JsonNode.Parse(Encoding.UTF8.GetString(file, 8, (int)n))?.AsObject() ?? throw new CheckpointException($"{path}: empty header"); }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException) { throw new CheckpointException($"{path}: corrupt header: {e.Message}", e); }
        var dataStart = 8 + (long)n;
        var data = file.AsSpan((int)dataStart).ToArray();
        try
        {
            var meta = header["__metadata__"]?.AsObject() ?? throw new CheckpointException($"{path}: not a Lookahead checkpoint (no __metadata__)");
            if ((string?)meta["format"] != Format) throw new CheckpointException($"{path}: not a Lookahead checkpoint (format '{(string?)meta["format"]}')");
            if ((string?)meta["version"] == "1")
                throw new CheckpointException($"{path}: checkpoint version 1 identifies the optimizer only by a name that omits some hyperparameters and depends on the culture; this library reads version {Version}; a version 1 file cannot be checked against the optimizer's hyperparameters, so it is not loaded");
            if ((string?)meta["version"] != Version.ToString(CultureInfo.InvariantCulture))
                throw new CheckpointException($"{path}: checkpoint version {(string?)meta["version"]}; this library reads version {Version}");
            var transform = (string?)meta["transform"] ?? throw new CheckpointException($"{path}: the header lacks 'transform'");
            var specText = (string?)meta["spec"] ?? throw new CheckpointException($"{path}: the header lacks 'spec'");
            var fingerprint = (string?)meta["fingerprint"] ?? throw new CheckpointException($"{path}: the header lacks 'fingerprint'");
            var scalarsJson = JsonNode.Parse((string?)meta["scalars"] ?? throw new CheckpointException($"{path}: the header lacks 'scalars'"))!.AsObject();
            var scalars = scalarsJson.ToDictionary(kv => kv.Key, kv => double.Parse((string?)kv.Value ?? throw new CheckpointException($"{path}: scalar '{kv.Key}' is not a string"), NumberStyles.Float, CultureInfo.InvariantCulture));
            var parameters = JsonNode.Parse((string?)meta["parameters"] ?? throw new CheckpointException($"{path}: the header lacks 'parameters'"))!.AsArray()
                .Select(x => (string?)x ?? throw new CheckpointException($"{path}: a parameter name is not a string")).ToArray();
            var userJson = (string?)meta["user"];
            var user = userJson is null ? new Dictionary<string, string>()
                : JsonNode.Parse(userJson)!.AsObject().ToDictionary(kv => kv.Key, kv => (string?)kv.Value ?? throw new CheckpointException($"{path}: metadata '{kv.Key}' is not a string"));
            var entries = new Dictionary<string, Entry>();
            long expectedBegin = 0;
            foreach (var (key, value) in header.OrderBy(kv => kv.Value?["data_offsets"]?[0]?.GetValue<long>() ?? -1))
            {
                if (key == "__metadata__") continue;
                var o = value?.AsObject() ?? throw new CheckpointException($"{path}: entry '{key}' is not an object");
                var dtype = (string?)o["dtype"] ?? throw new CheckpointException($"{path}: entry '{key}' lacks a dtype");
                var size = Dtypes.Values.FirstOrDefault(d => d.Code == dtype).Size;
                if (size == 0) throw new CheckpointException($"{path}: entry '{key}' has the unknown dtype '{dtype}'");
                var shape = o["shape"]?.AsArray().Select(x => x!.GetValue<long>()).ToArray() ?? throw new CheckpointException($"{path}: entry '{key}' lacks a shape");
                var offsets = o["data_offsets"]?.AsArray().Select(x => x!.GetValue<long>()).ToArray() ?? throw new CheckpointException($"{path}: entry '{key}' lacks data_offsets");
                if (offsets.Length != 2 || shape.Any(d => d < 0)) throw new CheckpointException($"{path}: entry '{key}' has a bad shape or offsets");
                long count = shape.Aggregate(1L, (a, b) => checked(a * b));
                if (offsets[0] != expectedBegin || offsets[1] - offsets[0] != count * size || offsets[1] > data.Length)
                    throw new CheckpointException($"{path}: entry '{key}' points at bytes [{offsets[0]}, {offsets[1]}) of {data.Length}, expected {count * size} bytes from {expectedBegin} (truncated or corrupt)");
                expectedBegin = offsets[1];
                entries[key] = new(key, dtype, shape, offsets[0], offsets[1]);
            }
            if (expectedBegin != data.Length) throw new CheckpointException($"{path}: {data.Length - expectedBegin} bytes after the last tensor (corrupt)");
            var expected = (string?)meta["sha256"] ?? throw new CheckpointException($"{path}: the header lacks its checksum");
            var actual = Digest(transform + "\n" + specText + "\n" + fingerprint, (string)meta["scalars"]!, (string)meta["parameters"]!, userJson ?? "{}",
                entries.Values.Select(e => (e.Key, e.Dtype, e.Shape, e.Begin, e.End)), new[] { data });
            if (!string.Equals(expected, actual, StringComparison.OrdinalIgnoreCase))
                throw new CheckpointException($"{path}: checksum mismatch: the file is corrupt (its contents do not match the SHA-256 it was saved with)");
            Spec spec;
            try { spec = Spec.Parse(specText); }
            catch (Exception e) when (e is FormatException or JsonException) { throw new CheckpointException($"{path}: corrupt spec: {e.Message}", e); }
            if (spec.Fingerprint != fingerprint) throw new CheckpointException($"{path}: the stored spec does not match its fingerprint (corrupt)");
            return (new Meta(transform, spec, fingerprint, scalars, parameters, user), entries, data);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or OverflowException or NullReferenceException or KeyNotFoundException)
        {
            throw new CheckpointException($"{path}: corrupt header: {e.Message}", e);
        }
    }

    static Tensor FromBytes(byte[] data, Entry e, ScalarType dtype)
    {
        var slice = data.AsSpan((int)e.Begin, (int)(e.End - e.Begin));
        if (dtype is ScalarType.BFloat16 or ScalarType.Float16)
        {
            var t = empty(e.Shape, dtype: dtype);
            if (slice.Length > 0)
            {
                var p = Kernels.NarrowFloats.DataPointer(t);
                if (p == IntPtr.Zero) { t.Dispose(); throw new InvalidOperationException($"cannot write the data of a {dtype} tensor on this host"); }
                Marshal.Copy(data, (int)e.Begin, p, slice.Length);
            }
            return t;
        }
        using var flat = dtype switch
        {
            ScalarType.Float64 => tensor(MemoryMarshal.Cast<byte, double>(slice).ToArray(), dtype: dtype),
            ScalarType.Float32 => tensor(MemoryMarshal.Cast<byte, float>(slice).ToArray(), dtype: dtype),
            ScalarType.Int64 => tensor(MemoryMarshal.Cast<byte, long>(slice).ToArray(), dtype: dtype),
            _ => tensor(MemoryMarshal.Cast<byte, int>(slice).ToArray(), dtype: dtype),
        };
        return flat.reshape(e.Shape).clone();
    }
}

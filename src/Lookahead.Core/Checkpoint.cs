using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
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
    /// The format version this library writes. Version 3 checks the contents with XXH3-128 (a non-cryptographic
    /// 128-bit hash, fast enough that a save or load runs at the disk's pace; like the SHA-256 before it, it guards
    /// against damage, not against a deliberate edit, since the digest is stored beside the data); version 2 files
    /// (SHA-256, otherwise the same layout) are read too. Version 1 files (which identified the optimizer by a
    /// culture-dependent name that omitted some hyperparameters) are refused with a message saying so.
    /// </summary>
    public const int Version = 3;

    /// <summary>The checksum of a format version: its header key, its length in hex digits, and a new incremental hasher.</summary>
    static (string Key, int HexLength, Func<Digest> Create) ChecksumOf(string version) => version == "2"
        ? ("sha256", 64, () => new Sha256Digest())
        : ("xxh3_128", 32, () => new Xxh128Digest());

    /// <summary>An incremental checksum over the metadata text and the tensor bytes.</summary>
    abstract class Digest : IDisposable
    {
        public abstract void Append(ReadOnlySpan<byte> data);
        public abstract string Hex();
        public virtual void Dispose() { }
    }

    sealed class Sha256Digest : Digest
    {
        readonly IncrementalHash _sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        public override void Append(ReadOnlySpan<byte> data) => _sha.AppendData(data);
        public override string Hex() => Convert.ToHexString(_sha.GetHashAndReset());
        public override void Dispose() => _sha.Dispose();
    }

    sealed class Xxh128Digest : Digest
    {
        readonly System.IO.Hashing.XxHash128 _xxh = new();
        public override void Append(ReadOnlySpan<byte> data) => _xxh.Append(data);
        public override string Hex() => Convert.ToHexString(_xxh.GetHashAndReset());
    }

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
        var entries = new List<(string Key, string Code, long[] Shape, long Begin, long End)>();
        long offset = 0;
        foreach (var (key, t) in tensors)
        {
            if (!Dtypes.TryGetValue(t.dtype, out var d)) throw new ArgumentException($"tensor '{key}' has dtype {t.dtype}; checkpoints store float64, float32, bfloat16, float16, int64 and int32");
            long bytes = checked(t.numel() * d.Size);
            header[key] = new JsonObject
            {
                ["dtype"] = d.Code,
                ["shape"] = new JsonArray(t.shape.Select(x => (JsonNode)x).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            entries.Add((key, d.Code, t.shape, offset, offset + bytes));
            offset += bytes;
        }
        var metadataNode = header["__metadata__"]!.AsObject();
        var text = DigestText((string)metadataNode["transform"]! + "\n" + (string)metadataNode["spec"]! + "\n" + (string)metadataNode["fingerprint"]!,
            (string)metadataNode["scalars"]!, (string)metadataNode["parameters"]!, (string)metadataNode["user"]!, entries);
        // The checksum covers the tensor bytes, which are streamed after the header: the header goes out with a
        // placeholder of the digest's length, overwritten in place once every byte has gone through the hash.
        var checksum = ChecksumOf(Version.ToString(CultureInfo.InvariantCulture));
        var placeholder = new string('0', checksum.HexLength);
        metadataNode[checksum.Key] = placeholder;
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int digestAt = LastIndexOf(json, Encoding.ASCII.GetBytes($"\"{checksum.Key}\":\"{placeholder}\"")) + $"\"{checksum.Key}\":\"".Length;
        int pad = (8 - json.Length % 8) % 8;
        var tmp = path + ".tmp";
        try
        {
            using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0))
            {
                using var sha = checksum.Create();
                sha.Append(Encoding.UTF8.GetBytes(text));
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)(json.Length + pad));
                f.Write(len);
                f.Write(json);
                for (int i = 0; i < pad; i++) f.WriteByte((byte)' ');
                foreach (var (_, t) in tensors) WriteTensor(f, sha, t);
                var digest = Encoding.ASCII.GetBytes(sha.Hex());
                f.Position = 8 + digestAt;
                f.Write(digest);
                // On the disk before the rename publishes it: a crash after the rename finds the whole file.
                f.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>Bytes per read or write when tensors are streamed: with the tensors' own memory, the only buffer a save or load uses.</summary>
    internal const int ChunkBytes = 1 << 20;

    static int LastIndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = haystack.Length - needle.Length; i >= 0; i--)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        throw new InvalidOperationException("the checksum placeholder is missing from the header");
    }

    /// <summary>
    /// Writes a tensor's bytes (little-endian, row-major) to <paramref name="f"/> and the hash: a contiguous CPU tensor
    /// straight from its memory in chunks; any other through one contiguous CPU copy, native and freed here (no
    /// managed copy of a tensor is made).
    /// </summary>
    static unsafe void WriteTensor(FileStream f, Digest sha, Tensor t)
    {
        long bytes = t.numel() * t.ElementSize;
        if (bytes == 0) return;
        using var scope = NewDisposeScope();
        var source = t.device_type == DeviceType.CPU && t.is_contiguous() ? t : t.detach().cpu().contiguous();
        var p = Kernels.NarrowFloats.DataPointer(source);
        if (p == IntPtr.Zero) throw new InvalidOperationException($"cannot read the data of a {t.dtype} tensor on this host");
        for (long o = 0; o < bytes; o += ChunkBytes)
        {
            var span = new ReadOnlySpan<byte>((byte*)p + o, (int)Math.Min(ChunkBytes, bytes - o));
            sha.Append(span);
            f.Write(span);
        }
    }

    [DllImport("libc", EntryPoint = "open", SetLastError = true)] static extern int PosixOpen(string path, int flags);
    [DllImport("libc", EntryPoint = "fsync")] static extern int PosixFsync(int fd);
    [DllImport("libc", EntryPoint = "close")] static extern int PosixClose(int fd);

    /// <summary>Flushes a directory's entries (the rename) to disk where the OS allows it (Linux, macOS); elsewhere a no-op.</summary>
    internal static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        try
        {
            int fd = PosixOpen(directory, 0);
            if (fd < 0) return;
            try { PosixFsync(fd); } finally { PosixClose(fd); }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    sealed record Entry(string Key, string Dtype, long[] Shape, long Begin, long End);

    /// <summary>
    /// What the checksum covers before the tensor bytes: the metadata strings and every entry's name, dtype, shape
    /// and offsets; the bytes follow in file order.
    /// </summary>
    static string DigestText(string transform, string scalars, string parameters, string user, IEnumerable<(string Key, string Dtype, long[] Shape, long Begin, long End)> entries)
    {
        var text = new StringBuilder().Append(transform).Append('\n').Append(scalars).Append('\n').Append(parameters).Append('\n').Append(user).Append('\n');
        foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.Key, StringComparer.Ordinal))
            text.Append(e.Key).Append('|').Append(e.Dtype).Append('|').Append(string.Join(",", e.Shape)).Append('|').Append(e.Begin).Append('|').Append(e.End).Append('\n');
        return text.ToString();
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
        using var file = Open(path);
        var h = ReadHeader(path, file);
        var (meta, entries) = (h.Meta, h.Entries);
        // A mismatch is reported as corruption if the file is corrupt (a damaged header can look like another optimizer).
        CheckpointException Mismatched(string message) { Verify(path, file, h); return new CheckpointException(message); }
        var spec = transform.Spec;
        if (meta.Fingerprint != spec.Fingerprint)
            throw Mismatched($"{path}: saved for another optimizer or other hyperparameters: {Mismatch(meta.Spec, spec)}");
        if (!meta.Parameters.OrderBy(n => n, StringComparer.Ordinal).SequenceEqual(parameters.Names.OrderBy(n => n, StringComparer.Ordinal)))
            throw Mismatched($"{path}: saved for the parameters [{string.Join(", ", meta.Parameters)}], not [{string.Join(", ", parameters.Names)}]");
        foreach (var (name, p) in parameters)
        {
            if (!Dtypes.ContainsKey(p.dtype)) throw new CheckpointException($"parameter '{name}' has dtype {p.dtype}; checkpoints store float64, float32, bfloat16, float16, int64 and int32");
            var e = entries.GetValueOrDefault("parameters/" + name) ?? throw Mismatched($"{path}: parameter '{name}' is missing from the file");
            if (!e.Shape.SequenceEqual(p.shape) || e.Dtype != Dtypes[p.dtype].Code)
                throw Mismatched($"{path}: parameter '{name}' was saved as {e.Dtype} [{string.Join(", ", e.Shape)}], here it is {Dtypes[p.dtype].Code} [{string.Join(", ", p.shape)}]");
        }

        using var scope = NewDisposeScope();
        var (template, device) = like is not null ? (like, (Device?)null) : Structure(transform, parameters);
        var tensorLeaves = template.Leaves().Where(l => l.Tensor is not null).ToDictionary(l => l.Path, l => l.Tensor!);
        var scalarLeaves = template.Leaves().Where(l => l.Tensor is null).Select(l => l.Path).ToHashSet();
        var savedTensors = entries.Keys.Where(k => k.StartsWith("state/", StringComparison.Ordinal)).Select(k => k["state/".Length..]).ToHashSet();
        var missing = tensorLeaves.Keys.Where(k => !savedTensors.Contains(k)).ToArray();
        var extra = savedTensors.Where(k => !tensorLeaves.ContainsKey(k)).ToArray();
        if (missing.Length > 0 || extra.Length > 0)
            throw Mismatched($"{path}: the state's structure differs: missing [{string.Join(", ", missing)}], unexpected [{string.Join(", ", extra)}]");
        var missingScalars = scalarLeaves.Where(k => !meta.Scalars.ContainsKey(k)).ToArray();
        var extraScalars = meta.Scalars.Keys.Where(k => !scalarLeaves.Contains(k)).ToArray();
        if (missingScalars.Length > 0 || extraScalars.Length > 0)
            throw Mismatched($"{path}: the state's scalars differ: missing [{string.Join(", ", missingScalars)}], unexpected [{string.Join(", ", extraScalars)}]");
        foreach (var (leaf, t) in tensorLeaves)
        {
            var e = entries["state/" + leaf];
            if (!e.Shape.SequenceEqual(t.shape) || e.Dtype != Dtypes[t.dtype].Code)
                throw Mismatched($"{path}: state '{leaf}' was saved as {e.Dtype} [{string.Join(", ", e.Shape)}], this optimizer has {Dtypes[t.dtype].Code} [{string.Join(", ", t.shape)}]");
        }

        // The state's bytes go straight from the file into new CPU tensors (then to the parameters' device); the
        // checksum is checked before any of them is handed out, and the scope frees them all if it fails.
        var values = entries.Values.Where(e => e.Key.StartsWith("state/", StringComparison.Ordinal)).ToDictionary(e => e.Key["state/".Length..], Empty);
        ReadData(path, file, h, e => e.Key.StartsWith("state/", StringComparison.Ordinal) ? values[e.Key["state/".Length..]] : null);
        var loaded = template.MapTensors((leaf, t) => SameDevice(values[leaf], device ?? t.device) ? values[leaf] : values[leaf].to(device ?? t.device))
            .MapScalars((leaf, _) => meta.Scalars[leaf]);
        scope.MoveToOuter(OptState.Tensors(loaded).Cast<IDisposable>());
        return loaded;
    }

    static bool SameDevice(Tensor t, Device d) => t.device_type == d.type && (t.device_index == d.index || d.type == DeviceType.CPU);

    /// <summary>
    /// The state's structure (leaf paths, dtypes, shapes, scalars) for a load: <c>transform.Init</c> run on
    /// storage-free "meta" copies of the parameters, so no state-sized memory is allocated and filled only to be
    /// replaced; the loaded tensors then go to the parameters' one device (returned). When the parameters span
    /// several devices, or an <c>Init</c> cannot run on meta tensors (it reads values), <c>Init</c> runs on the
    /// parameters themselves and the device is null (each leaf keeps its template's device).
    /// </summary>
    static (IOptState Template, Device? Device) Structure(IGradientTransformation transform, TensorTree parameters)
    {
        // By type and index: TorchSharp's Device compares by reference (every t.device is a new object).
        var devices = parameters.Tensors.Select(t => (t.device_type, t.device_index)).Distinct().ToArray();
        if (devices.Length == 1)
        {
            var meta = torch.device("meta");
            var shadows = parameters.Map(t => t.to(meta));
            try { return (transform.Init(shadows), parameters.Tensors.First().device); }
            catch (Exception e) when (e is not OutOfMemoryException) { }
        }
        return (transform.Init(parameters), null);
    }

    /// <summary>The parameter values stored in a checkpoint (new tensors on the CPU, owned by the caller).</summary>
    public static TensorTree LoadParameters(string path)
    {
        using var file = Open(path);
        var h = ReadHeader(path, file);
        var missing = h.Meta.Parameters.FirstOrDefault(n => !h.Entries.ContainsKey("parameters/" + n));
        if (missing is not null) { Verify(path, file, h); throw new CheckpointException($"{path}: parameter '{missing}' is missing from the file"); }
        using var scope = NewDisposeScope();
        var values = new Dictionary<string, Tensor>();
        ReadData(path, file, h, e => e.Key.StartsWith("parameters/", StringComparison.Ordinal) ? values[e.Key["parameters/".Length..]] = Empty(e) : null);
        var tree = TensorTree.Of(h.Meta.Parameters, h.Meta.Parameters.Select(n => values[n]).ToArray());
        scope.MoveToOuter(tree.Tensors.Cast<IDisposable>());
        return tree;
    }

    /// <summary>The extra entries <see cref="Save"/> was given (validated like the rest of the file).</summary>
    public static IReadOnlyDictionary<string, string> ReadMetadata(string path)
    {
        using var file = Open(path);
        var h = ReadHeader(path, file);
        Verify(path, file, h);
        return h.Meta.User;
    }

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

    sealed record Header(Meta Meta, Dictionary<string, Entry> Entries, long DataStart, string DigestText, string Expected, Func<Digest> Checksum);

    static FileStream Open(string path)
    {
        try { return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new CheckpointException($"{path}: cannot read: {e.Message}", e); }
    }

    /// <summary>Reads and validates the header (everything but the tensor bytes and the checksum, which <see cref="ReadData"/> checks).</summary>
    static Header ReadHeader(string path, FileStream file)
    {
        long fileLength = file.Length;
        if (fileLength < 8) throw new CheckpointException($"{path}: truncated ({fileLength} bytes; the header length alone takes 8)");
        Span<byte> len = stackalloc byte[8];
        file.ReadExactly(len);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(len);
        if (n < 2 || n > (ulong)(fileLength - 8) || n > int.MaxValue) throw new CheckpointException($"{path}: corrupt or truncated (a header of {n} bytes does not fit in {fileLength - 8})");
        var headerBytes = new byte[(int)n];
        file.ReadExactly(headerBytes);
        JsonObject header;
        try { header = JsonNode.Parse(Encoding.UTF8.GetString(headerBytes))?.AsObject() ?? throw new CheckpointException($"{path}: empty header"); }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException) { throw new CheckpointException($"{path}: corrupt header: {e.Message}", e); }
        var dataStart = 8 + (long)n;
        long dataLength = fileLength - dataStart;
        try
        {
            var meta = header["__metadata__"]?.AsObject() ?? throw new CheckpointException($"{path}: not a Lookahead checkpoint (no __metadata__)");
            if ((string?)meta["format"] != Format) throw new CheckpointException($"{path}: not a Lookahead checkpoint (format '{(string?)meta["format"]}')");
            if ((string?)meta["version"] == "1")
                throw new CheckpointException($"{path}: checkpoint version 1 identifies the optimizer only by a name that omits some hyperparameters and depends on the culture; this library reads version {Version}; a version 1 file cannot be checked against the optimizer's hyperparameters, so it is not loaded");
            var version = (string?)meta["version"];
            if (version != "2" && version != Version.ToString(CultureInfo.InvariantCulture))
                throw new CheckpointException($"{path}: checkpoint version {version}; this library reads versions 2 and {Version}");
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
                if (offsets[0] != expectedBegin || offsets[1] - offsets[0] != count * size || offsets[1] > dataLength)
                    throw new CheckpointException($"{path}: entry '{key}' points at bytes [{offsets[0]}, {offsets[1]}) of {dataLength}, expected {count * size} bytes from {expectedBegin} (truncated or corrupt)");
                expectedBegin = offsets[1];
                entries[key] = new(key, dtype, shape, offsets[0], offsets[1]);
            }
            if (expectedBegin != dataLength) throw new CheckpointException($"{path}: {dataLength - expectedBegin} bytes after the last tensor (corrupt)");
            var checksum = ChecksumOf(version);
            var expected = (string?)meta[checksum.Key] ?? throw new CheckpointException($"{path}: the header lacks its checksum ('{checksum.Key}')");
            var text = DigestText(transform + "\n" + specText + "\n" + fingerprint, (string)meta["scalars"]!, (string)meta["parameters"]!, userJson ?? "{}",
                entries.Values.Select(e => (e.Key, e.Dtype, e.Shape, e.Begin, e.End)));
            Spec spec;
            try { spec = Spec.Parse(specText); }
            catch (Exception e) when (e is FormatException or JsonException) { throw new CheckpointException($"{path}: corrupt spec: {e.Message}", e); }
            if (spec.Fingerprint != fingerprint) throw new CheckpointException($"{path}: the stored spec does not match its fingerprint (corrupt)");
            return new Header(new Meta(transform, spec, fingerprint, scalars, parameters, user), entries, dataStart, text, expected, checksum.Create);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or OverflowException or NullReferenceException or KeyNotFoundException)
        {
            throw new CheckpointException($"{path}: corrupt header: {e.Message}", e);
        }
    }

    /// <summary>
    /// Streams every entry's bytes, in file order, through the checksum: into the tensor <paramref name="into"/> gives
    /// for it (a new contiguous CPU tensor of the entry's dtype and shape) or through one small buffer; then checks the
    /// checksum and throws if the file is corrupt (the caller then frees what it made, so nothing is half loaded).
    /// </summary>
    static unsafe void ReadData(string path, FileStream file, Header h, Func<Entry, Tensor?> into)
    {
        using var sha = h.Checksum();
        sha.Append(Encoding.UTF8.GetBytes(h.DigestText));
        file.Position = h.DataStart;
        byte[]? buffer = null;
        try
        {
            foreach (var e in h.Entries.Values.OrderBy(e => e.Begin))
            {
                long bytes = e.End - e.Begin;
                var t = into(e);
                IntPtr p = IntPtr.Zero;
                if (t is not null && bytes > 0 && (p = Kernels.NarrowFloats.DataPointer(t)) == IntPtr.Zero)
                    throw new InvalidOperationException($"cannot write the data of a {t.dtype} tensor on this host");
                for (long o = 0; o < bytes; o += ChunkBytes)
                {
                    int n = (int)Math.Min(ChunkBytes, bytes - o);
                    var span = p != IntPtr.Zero ? new Span<byte>((byte*)p + o, n) : (buffer ??= new byte[ChunkBytes]).AsSpan(0, n);
                    file.ReadExactly(span);
                    sha.Append(span);
                }
            }
        }
        catch (EndOfStreamException e) { throw new CheckpointException($"{path}: truncated while reading the tensors: {e.Message}", e); }
        catch (IOException e) { throw new CheckpointException($"{path}: cannot read: {e.Message}", e); }
        if (!string.Equals(h.Expected, sha.Hex(), StringComparison.OrdinalIgnoreCase))
            throw new CheckpointException($"{path}: checksum mismatch: the file is corrupt (its contents do not match the checksum it was saved with)");
    }

    /// <summary>Checks the whole file's checksum (reading the tensor bytes through a small buffer).</summary>
    static void Verify(string path, FileStream file, Header h) => ReadData(path, file, h, _ => null);

    /// <summary>A new CPU tensor for <paramref name="e"/>, to be filled by <see cref="ReadData"/>.</summary>
    static Tensor Empty(Entry e) => empty(e.Shape, dtype: Dtypes.First(kv => kv.Value.Code == e.Dtype).Key);
}

using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Text;
using static TorchSharp.torch;

namespace Lookahead.TorchFormat;

/// <summary>
/// A file in <c>torch.save</c>'s zip format (PyTorch ≥ 1.6): <c>NAME/data.pkl</c>, the pickled object, whose tensors
/// refer to storages <c>NAME/data/KEY</c> holding their bytes (little-endian), and <c>NAME/version</c>. The reader
/// opens it and materialises tensors on demand, streaming a storage from the archive into a new tensor's memory (no
/// managed copy). <see cref="Write"/> writes one, durably (flushed before an atomic rename).
/// </summary>
/// <remarks>Ownership: a tensor <see cref="Materialize"/> returns is the caller's; the reader disposes its storages.</remarks>
internal sealed class TorchArchive : IDisposable
{
    readonly string _path;
    readonly ZipArchive _zip;
    readonly string _prefix;
    readonly Dictionary<string, Tensor> _storages = new();

    /// <summary>The unpickled object.</summary>
    public object? Root { get; }

    TorchArchive(string path)
    {
        _path = path;
        Stream file;
        try { file = File.OpenRead(path); }
        catch (FileNotFoundException) { throw new FileNotFoundException($"no file at '{path}'", path); }
        try
        {
            Span<byte> magic = stackalloc byte[4];
            if (file.Read(magic) != 4 || magic[0] != 0x50 || magic[1] != 0x4b)
                throw new InvalidDataException($"'{path}' is not a torch.save file of PyTorch ≥ 1.6 (a zip archive); a file saved with _use_new_zipfile_serialization=False must be saved again without it");
            file.Position = 0;
            _zip = new ZipArchive(file, ZipArchiveMode.Read, leaveOpen: false);
        }
        catch
        {
            file.Dispose();
            throw;
        }
        var pkl = _zip.Entries.FirstOrDefault(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal) && e.FullName.IndexOf('/') == e.FullName.Length - "/data.pkl".Length)
            ?? throw new InvalidDataException($"'{path}' has no NAME/data.pkl entry: not a torch.save file");
        _prefix = pkl.FullName[..^"data.pkl".Length];
        using var s = pkl.Open();
        using var m = new MemoryStream();
        s.CopyTo(m);
        Root = TorchPickle.Read(m.GetBuffer().AsSpan(0, (int)m.Length), $"'{path}'");
    }

    public static TorchArchive Open(string path) => new(Check.NotNull(path, nameof(path)));

    /// <summary>A new contiguous CPU tensor with <paramref name="t"/>'s values.</summary>
    public unsafe Tensor Materialize(PickledTensor t)
    {
        if (!_storages.TryGetValue(t.StorageKey, out var storage))
        {
            var entry = _zip.GetEntry(_prefix + "data/" + t.StorageKey)
                ?? throw new InvalidDataException($"'{_path}': the storage '{t.StorageKey}' a tensor refers to is missing");
            int size = TorchPickle.Storages.First(s => s.DType == t.DType).Size;
            long bytes = checked(t.StorageElements * size);
            if (entry.Length != bytes)
                throw new InvalidDataException($"'{_path}': storage '{t.StorageKey}' holds {entry.Length} bytes; {t.StorageElements} {t.DType} elements need {bytes}");
            storage = empty(new[] { t.StorageElements }, dtype: t.DType);
            _storages[t.StorageKey] = storage;
            if (bytes > 0)
            {
                var p = (byte*)Kernels.NarrowFloats.DataPointer(storage);
                if (p == null) throw new NotSupportedException($"cannot write the memory of a {t.DType} tensor on this host");
                using var s = entry.Open();
                long done = 0;
                while (done < bytes)
                {
                    int n = s.Read(new Span<byte>(p + done, (int)Math.Min(Checkpoint.ChunkBytes, bytes - done)));
                    if (n == 0) throw new InvalidDataException($"'{_path}': storage '{t.StorageKey}' ends early");
                    done += n;
                }
            }
        }
        long last = t.Offset;
        for (int k = 0; k < t.Shape.Length; k++)
        {
            if (t.Shape[k] < 0 || t.Stride[k] < 0) throw new InvalidDataException($"'{_path}': a tensor of storage '{t.StorageKey}' has a negative size or stride");
            if (t.Shape[k] > 0) last += (t.Shape[k] - 1) * t.Stride[k];
        }
        if (t.Offset < 0 || (t.Shape.All(x => x > 0) && last >= t.StorageElements))
            throw new InvalidDataException($"'{_path}': a tensor reaches past the end of storage '{t.StorageKey}' ({t.StorageElements} elements)");
        using var view = storage.as_strided(t.Shape, t.Stride, t.Offset);
        return view.contiguous().clone();
    }

    public void Dispose()
    {
        foreach (var s in _storages.Values) s.Dispose();
        _storages.Clear();
        _zip.Dispose();
    }

    // A fixed time for every entry, so that the same state writes the same bytes.
    static readonly DateTimeOffset EntryTime = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>
    /// Writes <paramref name="root"/> (whose tensors are <see cref="TorchPickle.TensorToWrite"/> values, keys "0", "1", …
    /// in <paramref name="tensors"/>'s order) as a torch.save file: to a temporary file, flushed to disk, renamed over
    /// <paramref name="path"/>, then the directory flushed.
    /// </summary>
    public static unsafe void Write(string path, object root, IReadOnlyList<TorchPickle.TensorToWrite> tensors)
    {
        var pickle = TorchPickle.Write(root);
        var tmp = path + ".tmp";
        try
        {
            using (var f = new FileStream(tmp, FileMode.Create, FileAccess.ReadWrite, FileShare.None))
            {
                using (var zip = new ZipArchive(f, ZipArchiveMode.Create, leaveOpen: true, entryNameEncoding: Encoding.UTF8))
                {
                    void Entry(string name, ReadOnlySpan<byte> bytes)
                    {
                        var e = zip.CreateEntry("archive/" + name, CompressionLevel.NoCompression);
                        e.LastWriteTime = EntryTime;
                        using var s = e.Open();
                        s.Write(bytes);
                    }
                    Entry("data.pkl", pickle);
                    Entry("byteorder", "little"u8);
                    foreach (var t in tensors)
                    {
                        var e = zip.CreateEntry("archive/data/" + t.Key, CompressionLevel.NoCompression);
                        e.LastWriteTime = EntryTime;
                        using var s = e.Open();
                        using var scope = NewDisposeScope();
                        var source = t.Tensor.device_type == TorchSharp.DeviceType.CPU && t.Tensor.is_contiguous() ? t.Tensor : t.Tensor.detach().cpu().contiguous();
                        long bytes = source.numel() * source.ElementSize;
                        if (bytes == 0) continue;
                        var p = (byte*)Kernels.NarrowFloats.DataPointer(source);
                        if (p == null) throw new NotSupportedException($"cannot read the memory of a {source.dtype} tensor on this host");
                        for (long o = 0; o < bytes; o += Checkpoint.ChunkBytes)
                            s.Write(new ReadOnlySpan<byte>(p + o, (int)Math.Min(Checkpoint.ChunkBytes, bytes - o)));
                    }
                    Entry("version", "3\n"u8);
                }
                f.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
        Checkpoint.SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }
}

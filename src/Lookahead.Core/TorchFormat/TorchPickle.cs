using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Numerics;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.TorchFormat;

/// <summary>A Python tuple as read from or written to a pickle (distinct from a list).</summary>
internal sealed record PyTuple(IReadOnlyList<object?> Items);

/// <summary>A Python dict, in insertion order (as Python keeps it).</summary>
internal sealed class PyDict
{
    readonly List<KeyValuePair<object, object?>> _items = new();
    public IReadOnlyList<KeyValuePair<object, object?>> Items => _items;
    public void Set(object key, object? value)
    {
        for (int i = 0; i < _items.Count; i++)
            if (Equals(_items[i].Key, key)) { _items[i] = KeyValuePair.Create(key, value); return; }
        _items.Add(KeyValuePair.Create(key, value));
    }
    public bool TryGet(object key, out object? value)
    {
        foreach (var kv in _items)
            if (Equals(kv.Key, key)) { value = kv.Value; return true; }
        value = null;
        return false;
    }
}

/// <summary>A global a pickle names (module and attribute), before it is called.</summary>
internal sealed record PyGlobal(string Module, string Name)
{
    public override string ToString() => Module + "." + Name;
}

/// <summary>A tensor as a pickle describes it: a storage in the archive and a strided view of it.</summary>
internal sealed record PickledTensor(string StorageKey, ScalarType DType, long StorageElements, long Offset, long[] Shape, long[] Stride);

/// <summary>
/// The subset of Python's pickle protocol (0–5 opcodes that a <c>torch.save</c> of a state dict uses) read into
/// <see cref="PyDict"/>, <see cref="PyTuple"/>, lists, strings, 64-bit integers, doubles, booleans, null and
/// <see cref="PickledTensor"/>; and written in protocol 2, as <c>torch.save</c> writes it. Only the globals a state
/// dict needs are accepted (<c>torch._utils._rebuild_tensor_v2</c>, <c>collections.OrderedDict</c>, the storage
/// types): a pickle naming any other global is refused, so reading a file never runs or builds anything else.
/// </summary>
internal static class TorchPickle
{
    internal static readonly (string Storage, ScalarType DType, int Size)[] Storages =
    {
        ("DoubleStorage", ScalarType.Float64, 8), ("FloatStorage", ScalarType.Float32, 4), ("HalfStorage", ScalarType.Float16, 2),
        ("BFloat16Storage", ScalarType.BFloat16, 2), ("LongStorage", ScalarType.Int64, 8), ("IntStorage", ScalarType.Int32, 4),
        ("ShortStorage", ScalarType.Int16, 2), ("CharStorage", ScalarType.Int8, 1), ("ByteStorage", ScalarType.Byte, 1),
        ("BoolStorage", ScalarType.Bool, 1),
    };

    static readonly object Mark = new();

    /// <summary>Reads one pickle from <paramref name="data"/>; <paramref name="what"/> names it in errors.</summary>
    public static object? Read(ReadOnlySpan<byte> data, string what)
    {
        var stack = new List<object?>();
        var memo = new Dictionary<long, object?>();
        int i = 0;
        InvalidDataException Bad(string message) => new($"{what}: {message} (at byte {i})");
        ReadOnlySpan<byte> Take(ReadOnlySpan<byte> d, int n)
        {
            if (n < 0 || i + n > d.Length) throw Bad("the pickle ends early");
            var s = d.Slice(i, n);
            i += n;
            return s;
        }
        object? Pop()
        {
            if (stack.Count == 0) throw Bad("the pickle's stack is empty");
            var v = stack[^1];
            stack.RemoveAt(stack.Count - 1);
            if (ReferenceEquals(v, Mark)) throw Bad("a mark where a value was expected");
            return v;
        }
        List<object?> PopToMark()
        {
            int m = stack.FindLastIndex(x => ReferenceEquals(x, Mark));
            if (m < 0) throw Bad("no mark on the pickle's stack");
            var items = stack.GetRange(m + 1, stack.Count - m - 1);
            stack.RemoveRange(m, stack.Count - m);
            return items;
        }
        object? Top() => stack.Count > 0 ? stack[^1] : throw Bad("the pickle's stack is empty");
        string Text(ReadOnlySpan<byte> s) => Encoding.UTF8.GetString(s);
        string Line(ReadOnlySpan<byte> d)
        {
            int end = d[i..].IndexOf((byte)'\n');
            if (end < 0) throw Bad("a text line without its end");
            var s = Encoding.ASCII.GetString(d.Slice(i, end));
            i += end + 1;
            return s;
        }
        void SetItems(object? target, IReadOnlyList<object?> kv)
        {
            if (target is not PyDict dict) throw Bad($"items set on a {Describe(target)}, not a dict");
            for (int k = 0; k + 1 < kv.Count; k += 2) dict.Set(kv[k] ?? throw Bad("a dict key is None"), kv[k + 1]);
        }

        while (true)
        {
            if (i >= data.Length) throw Bad("the pickle ends without STOP");
            byte op = data[i++];
            switch (op)
            {
                case 0x80: Take(data, 1); break; // PROTO
                case 0x95: Take(data, 8); break; // FRAME
                case (byte)'.': // STOP
                    return Pop();
                case (byte)'(': stack.Add(Mark); break;
                case (byte)'}': stack.Add(new PyDict()); break;
                case (byte)']': stack.Add(new List<object?>()); break;
                case (byte)')': stack.Add(new PyTuple(Array.Empty<object?>())); break;
                case (byte)'N': stack.Add(null); break;
                case 0x88: stack.Add(true); break;
                case 0x89: stack.Add(false); break;
                case (byte)'K': stack.Add((long)Take(data, 1)[0]); break;
                case (byte)'M': stack.Add((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(data, 2))); break;
                case (byte)'J': stack.Add((long)BinaryPrimitives.ReadInt32LittleEndian(Take(data, 4))); break;
                case 0x8a: // LONG1
                {
                    int n = Take(data, 1)[0];
                    var v = new BigInteger(Take(data, n), isUnsigned: false, isBigEndian: false);
                    if (v < long.MinValue || v > long.MaxValue) throw Bad($"the integer {v} does not fit 64 bits");
                    stack.Add((long)v);
                    break;
                }
                case (byte)'G': stack.Add(BinaryPrimitives.ReadDoubleBigEndian(Take(data, 8))); break;
                case (byte)'X': stack.Add(Text(Take(data, (int)BinaryPrimitives.ReadUInt32LittleEndian(Take(data, 4))))); break;
                case 0x8c: stack.Add(Text(Take(data, Take(data, 1)[0]))); break; // SHORT_BINUNICODE
                case 0x8d: stack.Add(Text(Take(data, checked((int)BinaryPrimitives.ReadUInt64LittleEndian(Take(data, 8)))))); break; // BINUNICODE8
                case (byte)'t': stack.Add(new PyTuple(PopToMark())); break;
                case 0x85: stack.Add(new PyTuple(new[] { Pop() })); break;
                case 0x86: { var b = Pop(); var a = Pop(); stack.Add(new PyTuple(new[] { a, b })); break; }
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); stack.Add(new PyTuple(new[] { a, b, c })); break; }
                case (byte)'a': { var v = Pop(); if (Top() is List<object?> l) l.Add(v); else throw Bad("APPEND to a non-list"); break; }
                case (byte)'e': { var items = PopToMark(); if (Top() is List<object?> l) l.AddRange(items); else throw Bad("APPENDS to a non-list"); break; }
                case (byte)'s': { var v = Pop(); var k = Pop(); SetItems(Top(), new[] { k, v }); break; }
                case (byte)'u': { var items = PopToMark(); SetItems(Top(), items); break; }
                case (byte)'q': memo[Take(data, 1)[0]] = Top(); break;
                case (byte)'r': memo[BinaryPrimitives.ReadUInt32LittleEndian(Take(data, 4))] = Top(); break;
                case 0x94: memo[memo.Count] = Top(); break; // MEMOIZE
                case (byte)'h': { long k = Take(data, 1)[0]; stack.Add(memo.TryGetValue(k, out var v) ? v : throw Bad($"memo {k} is not set")); break; }
                case (byte)'j': { long k = BinaryPrimitives.ReadUInt32LittleEndian(Take(data, 4)); stack.Add(memo.TryGetValue(k, out var v) ? v : throw Bad($"memo {k} is not set")); break; }
                case (byte)'c': { var module = Line(data); var name = Line(data); stack.Add(Global(module, name, Bad)); break; }
                case 0x93: { var name = Pop() as string; var module = Pop() as string; stack.Add(Global(module ?? throw Bad("STACK_GLOBAL without a module name"), name ?? throw Bad("STACK_GLOBAL without a name"), Bad)); break; }
                case (byte)'Q': stack.Add(Persistent(Pop(), Bad)); break; // BINPERSID
                case (byte)'R': { var args = Pop(); var f = Pop(); stack.Add(Call(f, args, Bad)); break; }
                case (byte)'b': // BUILD: only an OrderedDict's (empty) state is expected
                {
                    var st = Pop();
                    if (Top() is PyDict d && st is PyDict extra) foreach (var kv in extra.Items) d.Set(kv.Key, kv.Value);
                    else if (st is not null && !(st is PyDict { Items.Count: 0 })) throw Bad($"BUILD of a {Describe(Top())} with {Describe(st)}");
                    break;
                }
                default:
                    throw Bad($"opcode 0x{op:x2} ('{(op >= 32 && op < 127 ? (char)op : '?')}') is not one a state dict's pickle uses");
            }
        }
    }

    static object Global(string module, string name, Func<string, InvalidDataException> bad)
    {
        if (module == "torch._utils" && name is "_rebuild_tensor_v2" or "_rebuild_tensor") return new PyGlobal(module, name);
        if (module == "collections" && name == "OrderedDict") return new PyGlobal(module, name);
        if (module == "torch" && Storages.Any(s => s.Storage == name)) return new PyGlobal(module, name);
        throw bad($"the pickle names {module}.{name}; a torch.optim state dict holds only tensors, numbers, strings, lists, tuples and dicts");
    }

    sealed record StorageRef(string Key, ScalarType DType, long Elements);

    static object Persistent(object? pid, Func<string, InvalidDataException> bad)
    {
        if (pid is PyTuple { Items: [string tag, PyGlobal type, string key, _, long numel] } && tag == "storage" && type.Module == "torch")
        {
            var s = Storages.First(x => x.Storage == type.Name);
            return new StorageRef(key, s.DType, numel);
        }
        throw bad($"a persistent id {Describe(pid)} that is not a tensor storage");
    }

    static object? Call(object? f, object? args, Func<string, InvalidDataException> bad)
    {
        if (f is not PyGlobal g) throw bad($"a call of {Describe(f)}");
        var a = args as PyTuple ?? throw bad($"{g} called with {Describe(args)}");
        if (g.Module == "collections") return new PyDict();
        if (g.Module == "torch._utils" && a.Items is [StorageRef s, long offset, PyTuple shape, PyTuple stride, ..])
            return new PickledTensor(s.Key, s.DType, s.Elements, offset, Longs(shape, bad), Longs(stride, bad));
        throw bad($"{g} called with {Describe(args)}");
    }

    static long[] Longs(PyTuple t, Func<string, InvalidDataException> bad) =>
        t.Items.Select(x => x is long v ? v : throw bad($"a size or stride {Describe(x)}")).ToArray();

    internal static string Describe(object? v) => v switch
    {
        null => "None",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        string s => $"'{s}'",
        PyTuple t => "(" + string.Join(", ", t.Items.Select(Describe)) + (t.Items.Count == 1 ? ",)" : ")"),
        List<object?> l => "[" + string.Join(", ", l.Select(Describe)) + "]",
        PyDict => "a dict",
        PickledTensor p => $"a tensor of shape [{string.Join(", ", p.Shape)}] ({p.DType})",
        _ => v.GetType().Name,
    };

    // ---- writing (protocol 2) ----

    /// <summary>A tensor to be written: its bytes go to <c>data/KEY</c> of the archive.</summary>
    internal sealed record TensorToWrite(Tensor Tensor, string Key);

    /// <summary>Writes <paramref name="value"/> as a protocol-2 pickle (no memo; a reader does not need one).</summary>
    public static byte[] Write(object? value)
    {
        using var m = new MemoryStream();
        m.WriteByte(0x80); m.WriteByte(2);
        WriteValue(m, value);
        m.WriteByte((byte)'.');
        return m.ToArray();
    }

    static void WriteValue(Stream s, object? v)
    {
        Span<byte> b = stackalloc byte[8];
        switch (v)
        {
            case null: s.WriteByte((byte)'N'); break;
            case bool x: s.WriteByte(x ? (byte)0x88 : (byte)0x89); break;
            case int x: WriteValue(s, (long)x); break;
            case long x when x >= 0 && x < 256: s.WriteByte((byte)'K'); s.WriteByte((byte)x); break;
            case long x when x >= int.MinValue && x <= int.MaxValue:
                s.WriteByte((byte)'J'); BinaryPrimitives.WriteInt32LittleEndian(b, (int)x); s.Write(b[..4]); break;
            case long x:
                s.WriteByte(0x8a); s.WriteByte(8); BinaryPrimitives.WriteInt64LittleEndian(b, x); s.Write(b); break;
            case double x: s.WriteByte((byte)'G'); BinaryPrimitives.WriteDoubleBigEndian(b, x); s.Write(b); break;
            case string x:
            {
                var bytes = Encoding.UTF8.GetBytes(x);
                s.WriteByte((byte)'X'); BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)bytes.Length); s.Write(b[..4]); s.Write(bytes);
                break;
            }
            case PyTuple t when t.Items.Count == 0: s.WriteByte((byte)')'); break;
            case PyTuple t:
                s.WriteByte((byte)'(');
                foreach (var x in t.Items) WriteValue(s, x);
                s.WriteByte((byte)'t');
                break;
            case List<object?> l:
                s.WriteByte((byte)']');
                if (l.Count > 0)
                {
                    s.WriteByte((byte)'(');
                    foreach (var x in l) WriteValue(s, x);
                    s.WriteByte((byte)'e');
                }
                break;
            case PyDict d:
                s.WriteByte((byte)'}');
                if (d.Items.Count > 0)
                {
                    s.WriteByte((byte)'(');
                    foreach (var kv in d.Items) { WriteValue(s, kv.Key); WriteValue(s, kv.Value); }
                    s.WriteByte((byte)'u');
                }
                break;
            case TensorToWrite t:
            {
                var storage = Storages.First(x => x.DType == t.Tensor.dtype).Storage;
                WriteGlobal(s, "torch._utils", "_rebuild_tensor_v2");
                s.WriteByte((byte)'(');
                WriteValue(s, new PyTuple(new object?[] { "storage", null, t.Key, "cpu", t.Tensor.numel() }) , storage);
                s.WriteByte((byte)'Q');
                WriteValue(s, 0L);
                WriteValue(s, new PyTuple(t.Tensor.shape.Select(x => (object?)x).ToArray()));
                WriteValue(s, new PyTuple(RowMajorStrides(t.Tensor.shape).Select(x => (object?)x).ToArray()));
                WriteValue(s, false);
                WriteGlobal(s, "collections", "OrderedDict");
                s.WriteByte((byte)')');
                s.WriteByte((byte)'R');
                s.WriteByte((byte)'t');
                s.WriteByte((byte)'R');
                break;
            }
            default: throw new ArgumentException($"cannot pickle a {v.GetType().Name}");
        }
    }

    // The persistent id ('storage', torch.XStorage, key, 'cpu', numel): the storage type is a global, not a value.
    static void WriteValue(Stream s, PyTuple pid, string storage)
    {
        s.WriteByte((byte)'(');
        WriteValue(s, pid.Items[0]);
        WriteGlobal(s, "torch", storage);
        for (int k = 2; k < pid.Items.Count; k++) WriteValue(s, pid.Items[k]);
        s.WriteByte((byte)'t');
    }

    static void WriteGlobal(Stream s, string module, string name)
    {
        s.WriteByte((byte)'c');
        var bytes = Encoding.ASCII.GetBytes(module + "\n" + name + "\n");
        s.Write(bytes);
    }

    internal static long[] RowMajorStrides(long[] shape)
    {
        var stride = new long[shape.Length];
        long acc = 1;
        for (int k = shape.Length - 1; k >= 0; k--) { stride[k] = acc; acc *= Math.Max(shape[k], 1); }
        return stride;
    }
}

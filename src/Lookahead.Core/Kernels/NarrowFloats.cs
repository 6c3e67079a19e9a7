using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Lookahead.Kernels;

/// <summary>
/// The 16-bit float formats a runner keeps parameters in while their state and arithmetic are float32
/// (<see cref="StatePrecision.Float32"/>), and the conversions between them and float32 that the fused executor
/// runs when it loads a chunk of such an array and stores it back.
/// </summary>
/// <remarks>
/// <para>Widening is exact. Narrowing rounds to nearest, ties to even, as torch does when it writes a float32
/// result into a bfloat16 or float16 tensor (<c>p.add_(u)</c> with p in bfloat16 and u in float32), so the fused
/// executor and the TorchSharp executor store the same 16 bits for the same float32 value. A NaN becomes bfloat16's
/// quiet NaN 0x7FC0, as torch's conversion makes it.</para>
/// </remarks>
internal static unsafe class NarrowFloats
{
    /// <summary>Whether <paramref name="dtype"/> is a 16-bit float this executor widens to float32.</summary>
    public static bool IsNarrow(ScalarType dtype) => dtype is ScalarType.BFloat16 or ScalarType.Float16;

    /// <summary>The code an operand carries: 0 = the run's own dtype, 1 = bfloat16, 2 = float16.</summary>
    public static byte Code(ScalarType dtype) => dtype switch { ScalarType.BFloat16 => 1, ScalarType.Float16 => 2, _ => 0 };

    /// <summary>into[i] ← float32(from[i]) for <paramref name="n"/> elements of format <paramref name="code"/>.</summary>
    public static void Widen(byte code, ushort* from, float* into, long n)
    {
        long i = 0;
        if (code == 1)
        {
            for (; i + Vector256<float>.Count <= n; i += Vector256<float>.Count) Vector256.Store(WidenBFloat16(from + i), into + i);
            for (; i < n; i++) into[i] = BFloat16ToSingle(from[i]);
        }
        else
            for (; i < n; i++) into[i] = (float)BitConverter.UInt16BitsToHalf(from[i]);
    }

    /// <summary>into[i] ← round-to-nearest-even(from[i]) for <paramref name="n"/> elements of format <paramref name="code"/>.</summary>
    public static void Narrow(byte code, float* from, ushort* into, long n)
    {
        long i = 0;
        if (code == 1)
        {
            int w = Vector256<float>.Count;
            for (; i + 2 * w <= n; i += 2 * w)
            {
                var lo = RoundToBFloat16(Vector256.Load(from + i).AsUInt32());
                var hi = RoundToBFloat16(Vector256.Load(from + i + w).AsUInt32());
                Vector256.Store(Vector256.Narrow(lo, hi), into + i);
            }
            for (; i < n; i++) into[i] = SingleToBFloat16(from[i]);
        }
        else
            for (; i < n; i++) into[i] = BitConverter.HalfToUInt16Bits((Half)from[i]);
    }

    /// <summary>The 8 bfloat16 values at <paramref name="from"/> as float32 (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> WidenBFloat16(ushort* from) =>
        Vector256.ShiftLeft(Vector256.WidenLower(Vector256.Create(Vector128.Load(from), Vector128<ushort>.Zero)), 16).AsSingle();

    /// <summary>float32 bits rounded to bfloat16 (nearest, ties to even; NaN → 0x7FC0), in the low 16 bits of each lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<uint> RoundToBFloat16(Vector256<uint> bits)
    {
        var rounded = Vector256.ShiftRightLogical(bits + Vector256.Create(0x7FFFu) + (Vector256.ShiftRightLogical(bits, 16) & Vector256<uint>.One), 16);
        var nan = Vector256.GreaterThan(bits & Vector256.Create(0x7FFFFFFFu), Vector256.Create(0x7F800000u));
        return Vector256.ConditionalSelect(nan, Vector256.Create(0x7FC0u), rounded);
    }

    /// <summary>The bfloat16 nearest to <paramref name="x"/> (ties to even; NaN → 0x7FC0).</summary>
    public static ushort SingleToBFloat16(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        if ((bits & 0x7FFFFFFF) > 0x7F800000) return 0x7FC0;
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>The float32 value of the bfloat16 <paramref name="bits"/> (exact).</summary>
    public static float BFloat16ToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>
    /// The address of <paramref name="t"/>'s first element (storage plus offset) for any dtype, read from
    /// LibTorchSharp's own export without making a TorchSharp storage object; for float32 and float64 a host where
    /// that export cannot be bound falls back to the storage, inside a dispose scope of its own (a storage object made
    /// in the caller's scope would keep the tensor's memory alive until that scope ends). Zero when neither applies.
    /// </summary>
    public static IntPtr DataPointer(Tensor t)
    {
        if (_nativeData)
        {
            try { return THSTensor_data(t.Handle); }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { _nativeData = false; }
        }
        using var scope = torch.NewDisposeScope();
        return t.dtype switch
        {
            ScalarType.Float32 => t.storage<float>().data_ptr() + (nint)(t.storage_offset() * 4),
            ScalarType.Float64 => t.storage<double>().data_ptr() + (nint)(t.storage_offset() * 8),
            _ => IntPtr.Zero,
        };
    }

    static bool _nativeData = true;

    [DllImport("LibTorchSharp")]
    static extern IntPtr THSTensor_data(IntPtr handle);
}

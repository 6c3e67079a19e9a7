namespace Lookahead.FSharp

open System
open Lookahead

/// One C# factory (a public static method such as Optim.Adam), read for its default parameter values so that
/// the F# settings records take their defaults from the C# signature instead of typing the numbers again.
/// Every read checks the parameter's name and type; a mismatch fails at once, naming the factory and the parameter.
[<Sealed>]
type Factory(owner: Type, name: string) =
    let methods =
        owner.GetMethods(Reflection.BindingFlags.Public ||| Reflection.BindingFlags.Static)
        |> Array.filter (fun m -> m.Name = name)
        // The overload of numbers (an optimizer's Hyper overload, for tensor hyperparameters, has no defaults).
        |> Array.filter (fun m -> m.GetParameters() |> Array.forall (fun p -> p.ParameterType <> typeof<Hyper>))
    let method =
        match methods with
        | [| m |] -> m
        | [||] -> invalidOp (sprintf "Lookahead.FSharp: %s.%s does not exist; the F# layer reads its defaults from it" owner.Name name)
        | ms -> invalidOp (sprintf "Lookahead.FSharp: %s.%s has %d overloads; the F# layer reads its defaults from exactly one" owner.Name name ms.Length)
    let fail (what: string) = invalidOp (sprintf "Lookahead.FSharp: %s.%s %s" owner.Name name what)

    /// The parameter called `parameter`, declared with the type `expected` when one is given.
    let find (expected: Type option) (parameter: string) : Reflection.ParameterInfo =
        let p =
            match method.GetParameters() |> Array.tryFind (fun p -> p.Name = parameter) with
            | Some p -> p
            | None ->
                let names = method.GetParameters() |> Array.map (fun p -> p.Name) |> String.concat ", "
                fail (sprintf "has no parameter '%s' (its parameters: %s)" parameter names)
        match expected with
        | Some t when p.ParameterType <> t -> fail (sprintf "declares '%s' as %s, not %s" parameter p.ParameterType.Name t.Name)
        | _ -> p

    /// The declared constant, if any (null for a default of null, which the body resolves).
    let constant (p: Reflection.ParameterInfo) = if p.HasDefaultValue then Some p.DefaultValue else None

    /// An Optim factory.
    new(name: string) = Factory(typeof<Optim>, name)

    /// The method read.
    member _.Method = method

    /// A description such as `Optim.Adam`.
    member _.Name = owner.Name + "." + name

    /// The C# default of `parameter`, converted to 'T (enum constants are stored as their underlying integers).
    member _.Default<'T>(parameter: string) : 'T =
        let p = find (Some typeof<'T>) parameter
        match constant p with
        | None -> fail (sprintf "has no default for '%s': give the F# value with Required" parameter)
        | Some null -> fail (sprintf "declares '%s' = null and resolves it in its body: use NullAsNone or ResolvedInBody" parameter)
        | Some (:? 'T as v) -> v
        | Some v when typeof<'T>.IsEnum -> Enum.ToObject(typeof<'T>, v) :?> 'T
        | Some v -> fail (sprintf "has the default %A (%s) for '%s', not a %s" v (v.GetType().Name) parameter typeof<'T>.Name)

    /// F#'s own value for a parameter the C# factory requires (it has no default to read). Fails if the C#
    /// signature gains a default, so that the F# value is then dropped for it rather than kept as a second source.
    member _.Required<'T>(parameter: string, value: 'T) : 'T =
        let p = find (Some typeof<'T>) parameter
        match constant p with
        | None -> value
        | Some d -> fail (sprintf "now has the default %A for '%s': read it with Default instead of the F# value %A" d parameter value)

    /// None for a parameter whose C# default is null: the F# option maps back to that null, so C# decides.
    member _.NullAsNone<'T when 'T: null>(parameter: string) : 'T option =
        match constant (find (Some typeof<'T>) parameter) with
        | Some null -> None
        | d -> fail (sprintf "has the default %A for '%s', not null" d parameter)

    /// None for a nullable number whose C# default is null (the C# body then decides, e.g. by an analysis).
    member _.NullableAsNone<'T when 'T: struct and 'T: (new: unit -> 'T) and 'T :> ValueType>(parameter: string) : 'T option =
        match constant (find (Some typeof<Nullable<'T>>) parameter) with
        | Some null -> None
        | d -> fail (sprintf "has the default %A for '%s', not null" d parameter)

    /// The default of a nullable number as an option: None for null, Some v for a declared value (e.g. ADOPT's clip exponent 0.25).
    member _.Optional<'T when 'T: struct and 'T: (new: unit -> 'T) and 'T :> ValueType>(parameter: string) : 'T option =
        match constant (find (Some typeof<Nullable<'T>>) parameter) with
        | Some null -> None
        | Some (:? 'T as v) -> Some v
        | d -> fail (sprintf "has the default %A for '%s', not a %s or null" d parameter typeof<'T>.Name)

    /// The value the C# body substitutes for a null default (e.g. `betas ?? (0.9, 0.95)`), which metadata cannot
    /// show. Checks that the declared default is null; the create-defaults tests compare the result with the C# call.
    member _.ResolvedInBody<'T>(parameter: string, value: 'T) : 'T =
        match constant (find None parameter) with
        | Some null -> value
        | d -> fail (sprintf "has the default %A for '%s', not null: read it with Default" d parameter)

# bash completion for keyless (installed as share/bash-completion/completions/keyless, and for
# the daemons). The subcommands and their options are read from the programs' own --help, so
# this file never falls behind them: `keyless --help` lists the commands, `keyless CMD --help`
# the options (every "--word" it mentions).

_keyless_words() { # PROGRAM [ARGS...]: the --options that PROGRAM ARGS --help mentions
  "$@" --help 2>/dev/null | grep -oE -- '(^|[ ,\[])--[a-z][a-z0-9-]*' | sed 's/^[ ,[]//' | sort -u
}

_keyless() {
  local cur prev cmd
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD-1]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    local cmds
    cmds="$("${COMP_WORDS[0]}" --help 2>/dev/null | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p')"
    mapfile -t COMPREPLY < <(compgen -W "$cmds --help --version" -- "$cur")
    return
  fi
  cmd="${COMP_WORDS[1]}"
  case "$prev" in
    -i|-o|-P|-V|-D|--conf|--ca|--cert|--key|--manifest|--aggr-key-file|--ext-key-file|--state|-c|--config|--witness|--witness-file)
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      return ;;
  esac
  case "$cmd" in
    calendar|devpki|core|witness|audit-log)
      if [ "$COMP_CWORD" -eq 2 ] && [[ "$cur" != -* ]]; then
        local subs
        case "$cmd" in
          calendar) subs="init append root chain stat audit" ;;
          devpki) subs="issue revoke crl" ;;
          core) subs="status add remove" ;;
          witness) subs="init sign add show" ;;
          audit-log) subs="verify" ;;
        esac
        mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
        return
      fi ;;
  esac
  if [[ "$cur" == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$(_keyless_words "${COMP_WORDS[0]}" "$cmd")" -- "$cur")
  else
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  fi
}

_keyless_daemon() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
  case "$prev" in
    -c|--config) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
    --log-level) mapfile -t COMPREPLY < <(compgen -W "debug info warn error" -- "$cur"); return ;;
  esac
  mapfile -t COMPREPLY < <(compgen -W "$(_keyless_words "${COMP_WORDS[0]}") -c" -- "$cur")
}

complete -o filenames -F _keyless keyless
complete -o filenames -F _keyless_daemon keyless-core keyless-gateway keyless-aggregator keyless-extender

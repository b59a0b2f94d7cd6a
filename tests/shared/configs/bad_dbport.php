<?php
$CONFIG = array('overwrite.cli.url' => 'https://x.example', 'dbtype' => 'pgsql', 'dbhost' => 'db:99999', 'dbuser' => 'u', 'redis' => ['host' => 'r']);

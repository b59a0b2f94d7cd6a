<?php
$CONFIG = array('dbtype' => 'mysql', 'dbhost' => 'db', 'dbuser' => 'u', 'redis' => ['host' => 'r']);
